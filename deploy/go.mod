module github.com/twinmx/twinmx/deploy

go 1.26.8
