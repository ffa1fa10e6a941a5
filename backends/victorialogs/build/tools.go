//go:build tools

// Package build pins the VictoriaLogs single-node server (Apache-2.0) for the
// local test stack. Build it with:
//
//	CGO_ENABLED=0 go build -trimpath \
//	  -ldflags "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-v1.52.1" \
//	  -o ~/.cache/joblogger/stack/bin/victoria-logs \
//	  github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs
package build

import (
	_ "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"
)
