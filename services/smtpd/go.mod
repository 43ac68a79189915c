module github.com/twinmx/twinmx/services/smtpd

go 1.26.8

replace github.com/twinmx/twinmx/pkg/model => ../../pkg/model

replace github.com/twinmx/twinmx/pkg/wire => ../../pkg/wire

replace github.com/twinmx/twinmx/services/dbd => ../dbd

require (
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	github.com/emersion/go-smtp v0.25.1 // indirect
)
