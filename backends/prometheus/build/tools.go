//go:build tools

// Package build pins Prometheus and promtool used by joblogger's local stack
// and by the alert-rule tests (see go.mod).
package build

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
