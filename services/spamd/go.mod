module github.com/twinmx/twinmx/services/spamd

go 1.26.8

replace github.com/twinmx/twinmx/pkg/model => ../../pkg/model

replace github.com/twinmx/twinmx/pkg/wire => ../../pkg/wire

replace github.com/twinmx/twinmx/services/dbd => ../dbd

require (
	blitiri.com.ar/go/spf v1.6.0
	github.com/emersion/go-msgauth v0.7.0
	github.com/miekg/dns v1.1.73
	github.com/twinmx/twinmx/pkg/model v0.0.0
	github.com/urfave/cli/v2 v2.27.7
	golang.org/x/net v0.62.0
)

require (
	github.com/cpuguy83/go-md2man/v2 v2.0.7 // indirect
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
	github.com/xrash/smetrics v0.0.0-20240521201337-686a1a2994c1 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
