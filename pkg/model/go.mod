module github.com/twinmx/twinmx/pkg/model

go 1.26.8

require pgregory.net/rapid v1.3.0

require (
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0 // indirect
)
