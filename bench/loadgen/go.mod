module relay.example/loadgen

go 1.26.0

require (
	connectrpc.com/connect v1.21.1
	relay.example/peer v0.0.0
)

require google.golang.org/protobuf v1.36.12 // indirect

// The relay's Go client code is generated once, into the Go example peer
// (scripts/build-polyglot-examples.sh); the load generator uses the same packages.
replace relay.example/peer => ../../examples/go
