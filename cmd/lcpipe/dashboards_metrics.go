package main

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/lcpipe/lcpipe/internal/telemetry"
)

// observeHTTP wraps the dashboards viewer with request metrics:
// lcpipe_dashboards_requests_total{route,code} and the
// lcpipe_dashboards_request_duration_seconds{route} histogram. Routes are a
// fixed set (api/query, api/dashboards, api/filters, page, assets, other),
// so labels stay bounded whatever is requested.
func observeHTTP(tel *telemetry.Telemetry, h http.Handler) http.Handler {
	m := tel.Meter("github.com/lcpipe/lcpipe/cmd/lcpipe")
	requests, _ := m.Int64Counter("lcpipe.dashboards.requests", metric.WithUnit("{request}"),
		metric.WithDescription("requests to the built-in dashboards, by route and HTTP status code"))
	duration, _ := m.Float64Histogram("lcpipe.dashboards.request.duration", metric.WithUnit("s"),
		metric.WithDescription("time to answer a dashboards request (api/query runs one panel's SQL)"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20))
	var opts sync.Map
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		route := routeOf(r.URL.Path)
		key := route + " " + strconv.Itoa(sw.code)
		o, ok := opts.Load(key)
		if !ok {
			o, _ = opts.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(attribute.String("route", route), attribute.String("code", strconv.Itoa(sw.code)))))
		}
		requests.Add(r.Context(), 1, o.(metric.AddOption))
		duration.Record(r.Context(), time.Since(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(attribute.String("route", route))))
	})
}

func routeOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/api/"):
		switch p := strings.TrimPrefix(path, "/api/"); p {
		case "query", "dashboards", "filters":
			return "api/" + p
		}
		return "other"
	case path == "/":
		return "page"
	case strings.HasPrefix(path, "/assets/"):
		return "assets"
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
