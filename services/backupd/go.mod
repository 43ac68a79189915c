module github.com/twinmx/twinmx/services/backupd

go 1.26.8

replace github.com/twinmx/twinmx/pkg/model => ../../pkg/model

replace github.com/twinmx/twinmx/pkg/wire => ../../pkg/wire

replace github.com/twinmx/twinmx/services/dbd => ../dbd
