module github.com/twinmx/twinmx/pkg/wire

go 1.26.8

require (
	github.com/flynn/noise v1.1.0
	github.com/twinmx/twinmx/pkg/model v0.0.0
	golang.org/x/crypto v0.59.0
	pgregory.net/rapid v1.3.0
)

require golang.org/x/sys v0.50.0 // indirect

replace github.com/twinmx/twinmx/pkg/model => ../model
