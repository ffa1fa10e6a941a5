//go:build tools

// Package build pins the Jaeger v2 all-in-one binary used by joblogger's local
// stack. scripts/stack.py runs, in this directory:
//
//	go build -o <cache>/bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger
package build

import (
	_ "github.com/jaegertracing/jaeger/cmd/jaeger"
)
