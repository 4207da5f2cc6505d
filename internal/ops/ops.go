// Package ops serves aemproxy's operations endpoints on the admin address:
// /healthz (the process is alive), /readyz (every route can authenticate
// right now) and /metrics (Prometheus).
package ops

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aemproxy/aemproxy/internal/ims"
)

// TokenState is what ops needs of a route's token cache.
type TokenState interface {
	State() ims.CacheState
}

// Route is one proxied route as ops sees it.
type Route struct {
	Name string
	// Tokens is nil for a route that needs no IMS token.
	Tokens TokenState
}

// Options configures a Server.
type Options struct {
	Routes   []Route
	Gatherer prometheus.Gatherer
	// Pprof mounts net/http/pprof under /debug/pprof/.
	Pprof bool
}

// Server holds readiness state and serves the admin routes.
type Server struct {
	routes   []Route
	gatherer prometheus.Gatherer
	pprof    bool
	draining atomic.Bool
}

// New returns a Server for the given routes.
func New(o Options) *Server {
	return &Server{routes: o.Routes, gatherer: o.Gatherer, pprof: o.Pprof}
}

// SetDraining makes /readyz answer 503 from now on, so that load balancers
// stop sending traffic before the listeners close.
func (s *Server) SetDraining() { s.draining.Store(true) }

// Handler returns the admin router.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		rep := s.Readiness()
		status := http.StatusOK
		if rep.Status != "ready" {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, rep)
	})
	if s.gatherer != nil {
		r.Handle("/metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	}
	if s.pprof {
		r.HandleFunc("/debug/pprof/*", pprof.Index)
		r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return r
}

// Readiness is the body of /readyz.
type Readiness struct {
	// Status is "ready", "not_ready" or "draining".
	Status string        `json:"status"`
	Routes []RouteStatus `json:"routes"`
}

// RouteStatus describes one route's credential.
type RouteStatus struct {
	Name                string     `json:"name"`
	Ready               bool       `json:"ready"`
	Reason              string     `json:"reason,omitempty"`
	TokenExpiresAt      *time.Time `json:"token_expires_at,omitempty"`
	LastRefresh         *time.Time `json:"last_refresh,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures,omitempty"`
	NextAttempt         *time.Time `json:"next_attempt,omitempty"`
	CertificateNotAfter *time.Time `json:"certificate_not_after,omitempty"`
}

// Readiness reports whether every route holds a usable credential.
func (s *Server) Readiness() Readiness {
	rep := Readiness{Status: "ready", Routes: make([]RouteStatus, 0, len(s.routes))}
	for _, rt := range s.routes {
		st := RouteStatus{Name: rt.Name, Ready: true}
		if rt.Tokens != nil {
			cs := rt.Tokens.State()
			st.Ready = cs.Valid
			st.TokenExpiresAt = timePtr(cs.TokenExpiresAt)
			st.LastRefresh = timePtr(cs.LastSuccess)
			st.ConsecutiveFailures = cs.ConsecutiveFailures
			st.CertificateNotAfter = timePtr(cs.CertificateNotAfter)
			if cs.LastError != nil {
				st.LastError = cs.LastError.Error()
				st.NextAttempt = timePtr(cs.NextAttempt)
			}
			if !cs.Valid {
				st.Reason = "no valid IMS access token yet"
				if cs.LastError != nil {
					st.Reason = "no valid IMS access token: " + cs.LastError.Error()
				}
			}
		}
		if !st.Ready {
			rep.Status = "not_ready"
		}
		rep.Routes = append(rep.Routes, st)
	}
	if s.draining.Load() {
		rep.Status = "draining"
	}
	return rep
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
