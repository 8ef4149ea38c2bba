// Package admin is a process's private HTTP listener for operators and
// orchestrators: liveness (/healthz), readiness (/readyz) and whatever the
// process mounts with Handle (ingest's /status), Prometheus /metrics and,
// when enabled, the Go profiler under /debug/pprof/.
// It is separate from any public listener (ingest's webhook endpoint faces
// LiveChat and the internet) so operational data and controls are never
// exposed there; the default address is loopback.
package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Config of the admin listener.
type Config struct {
	// Addr to listen on (ADMIN_ADDR). Keep it private: loopback or an
	// internal interface. Required.
	Addr string
	// Ready reports whether the process can do its work (nil error) for
	// /readyz. Nil means always ready once listening.
	Ready func(ctx context.Context) error
	// Metrics, when set, is served at /metrics (telemetry's Prometheus
	// handler).
	Metrics http.Handler
	// Pprof mounts net/http/pprof under /debug/pprof/ (ADMIN_PPROF). Off
	// by default: profiles reveal internals and cost CPU while taken.
	Pprof bool
	// Log receives the server's errors. Default: discard.
	Log *slog.Logger
}

// withDefaults fills the zero fields with the defaults documented on Config.
func (c Config) withDefaults() Config {
	c.Log = cmp.Or(c.Log, slog.New(slog.DiscardHandler))
	return c
}

// Server is an admin listener. Build with New, mount handlers with
// Handle, then Serve or Run.
type Server struct {
	cfg Config
	mux *http.ServeMux
	srv *http.Server
}

// New builds the server with /healthz and /readyz mounted.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("admin: no address (ADMIN_ADDR)")
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.Pprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)}
	return s, nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

// Handle mounts h at pattern (net/http ServeMux patterns, e.g.
// "GET /status"). Call before Serve.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler is the server's handler (tests).
func (s *Server) Handler() http.Handler { return s.mux }

// Run listens on Addr and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down (in-flight requests
// get 5s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(ln) }()
	s.cfg.Log.Info("admin listening", "addr", ln.Addr().String())
	select {
	case err := <-done:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(sctx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}
