//go:build race

package store

// raceEnabled: under the race detector sync.Pool drops a random quarter of
// what is put back, so Pebble's pooled iterators are allocated anew now and
// then and allocation counts say nothing about our code.
const raceEnabled = true
