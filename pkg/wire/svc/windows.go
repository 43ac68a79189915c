package svc

import (
	"slices"
	"strings"
)

// WindowsEnv is the environment a Windows service gets (the service's
// Environment registry value): the captured TWINMX_* variables plus
// TWINMX_SERVICE_DIR (the folder to run in: Windows starts services in
// System32) and TWINMX_SERVICE_NAME (for the log file and the service
// control manager).
func WindowsEnv(s Spec) map[string]string {
	env := make(map[string]string, len(s.Env)+2)
	for _, kv := range s.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	env["TWINMX_SERVICE_DIR"] = s.WorkDir
	env["TWINMX_SERVICE_NAME"] = s.Name
	return env
}

// sortedKeys is for printing maps in a stable order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
