module github.com/twinmx/twinmx/services/smsd

go 1.26.8

replace github.com/twinmx/twinmx/pkg/model => ../../pkg/model

replace github.com/twinmx/twinmx/pkg/wire => ../../pkg/wire

replace github.com/twinmx/twinmx/services/dbd => ../dbd

require (
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6
	github.com/emersion/go-smtp v0.26.0
	github.com/prometheus/client_golang v1.25.0
	github.com/twinmx/twinmx/pkg/model v0.0.0
	github.com/twinmx/twinmx/pkg/wire v0.0.0
	github.com/twinmx/twinmx/services/dbd v0.0.0-00010101000000-000000000000
	github.com/urfave/cli/v2 v2.27.7
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/cpuguy83/go-md2man/v2 v2.0.7 // indirect
	github.com/flynn/noise v1.1.0 // indirect
	github.com/kardianos/service v1.3.0 // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
	github.com/xrash/smetrics v0.0.0-20240521201337-686a1a2994c1 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
