module github.com/twinmx/twinmx/pkg/wire

go 1.26.8

require (
	github.com/flynn/noise v1.1.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)
