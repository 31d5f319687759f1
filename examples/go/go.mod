module example.com/runoff-example

go 1.19

require github.com/gorilla/websocket v1.5.0

// Debian's golang-github-gorilla-websocket-dev (1.5.0), installed by ../setup.sh: the build
// needs no module download (GOPROXY=off works) and no go.sum entry for it.
replace github.com/gorilla/websocket => /usr/share/gocode/src/github.com/gorilla/websocket
