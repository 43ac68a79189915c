package svc

import "runtime"

// runtimeGOOS is runtime.GOOS; tests set it to see the other platform's
// output.
var runtimeGOOS = runtime.GOOS
