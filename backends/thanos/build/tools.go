//go:build tools

// Package build pins the Thanos binary used by joblogger's scale tier
// (Receive with a hashring, Query in front). scripts/stack.py runs, in a copy
// of this directory:
//
//	go build -trimpath -ldflags='-s -w' -o <cache>/bin/thanos-v0.42.0-<hash> github.com/thanos-io/thanos/cmd/thanos
package build

import (
	_ "github.com/thanos-io/thanos/cmd/thanos"
)
