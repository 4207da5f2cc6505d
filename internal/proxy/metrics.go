package proxy

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the proxy does. A nil *Metrics is valid and counts
// nothing. One Metrics may serve several Handlers (one per listener) as long
// as their route names differ.
type Metrics struct {
	requests *prometheus.CounterVec   // route, method, code
	duration *prometheus.HistogramVec // route, method
	bytes    *prometheus.CounterVec   // route
	inFlight *prometheus.GaugeVec     // route
	replays  *prometheus.CounterVec   // route
	rejected *prometheus.CounterVec   // reason
	csrf     *prometheus.CounterVec   // route, result
	csrfRe   *prometheus.CounterVec   // route
}

// NewMetrics creates the proxy's metrics and registers them on reg (if not
// nil). Registering on a registry that already holds them reuses those, so
// NewMetrics never panics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aemproxy_requests_total",
			Help: "Requests proxied, by route, method and the status code sent to the client (499: the client went away).",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aemproxy_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response body, by route and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route", "method"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aemproxy_response_bytes_total",
			Help: "Response body bytes written to clients, by route.",
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aemproxy_requests_in_flight",
			Help: "Requests being proxied now, by route.",
		}, []string{"route"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aemproxy_upstream_replays_total",
			Help: "Requests sent again with a fresh IMS token after AEM answered 401, by route.",
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aemproxy_rejected_requests_total",
			Help: "Requests refused by the proxy before reaching AEM (no route, unclean path, a route's access rules, policy or limits), by reason.",
		}, []string{"reason"}),
		csrf: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aemproxy_csrf_token_fetches_total",
			Help: "Fetches of AEM's CSRF token for routes with csrf, by route and result (ok, error).",
		}, []string{"route", "result"}),
		csrfRe: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aemproxy_csrf_replays_total",
			Help: "Requests sent again with a new CSRF token after AEM answered 403 to the one sent, by route.",
		}, []string{"route"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.duration = register(reg, m.duration)
		m.bytes = register(reg, m.bytes)
		m.inFlight = register(reg, m.inFlight)
		m.replays = register(reg, m.replays)
		m.rejected = register(reg, m.rejected)
		m.csrf = register(reg, m.csrf)
		m.csrfRe = register(reg, m.csrfRe)
	}
	return m
}

// register registers c, or returns the equal collector reg already holds.
// Any other registration error means a different metric of the same name
// is registered: c is then left unregistered, still counting.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c
}

func (m *Metrics) reject(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// methods are the method label values; any other method counts as OTHER so
// that clients cannot create series.
var methods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodTrace, "OTHER",
}

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodOptions:
		return 6
	case http.MethodTrace:
		return 7
	}
	return len(methods) - 1
}

// routeMetrics holds one route's series, resolved once so that a request
// does not look them up by label. A nil *routeMetrics counts nothing.
type routeMetrics struct {
	m        *Metrics
	name     string
	inFlight prometheus.Gauge
	bytes    prometheus.Counter
	replays  prometheus.Counter
	duration [len(methods)]prometheus.Observer
	requests [len(methods)]codeCounters
}

func (m *Metrics) forRoute(name string) *routeMetrics {
	if m == nil {
		return nil
	}
	rm := &routeMetrics{
		m:        m,
		name:     name,
		inFlight: m.inFlight.WithLabelValues(name),
		bytes:    m.bytes.WithLabelValues(name),
		replays:  m.replays.WithLabelValues(name),
	}
	for i, method := range methods {
		rm.duration[i] = m.duration.WithLabelValues(name, method)
	}
	return rm
}

func (rm *routeMetrics) start() {
	if rm != nil {
		rm.inFlight.Inc()
	}
}

func (rm *routeMetrics) replay() {
	if rm != nil {
		rm.replays.Inc()
	}
}

func (rm *routeMetrics) csrfFetch(ok bool) {
	if rm == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "error"
	}
	rm.m.csrf.WithLabelValues(rm.name, result).Inc()
}

func (rm *routeMetrics) csrfReplay() {
	if rm != nil {
		rm.m.csrfRe.WithLabelValues(rm.name).Inc()
	}
}

func (rm *routeMetrics) done(method string, code int, bytes int64, seconds float64) {
	if rm == nil {
		return
	}
	rm.inFlight.Dec()
	i := methodIndex(method)
	rm.requests[i].get(rm, i, code).Inc()
	rm.duration[i].Observe(seconds)
	if bytes > 0 {
		rm.bytes.Add(float64(bytes))
	}
}

// codeCounters caches the request counters of one route and method by
// status code. Reads take no lock; the list is copied on the rare write.
// HTTP status codes have three digits, which bounds the list.
type codeCounters struct {
	mu   sync.Mutex
	list atomic.Pointer[[]codeCounter]
}

type codeCounter struct {
	code int
	c    prometheus.Counter
}

func (cc *codeCounters) get(rm *routeMetrics, method, code int) prometheus.Counter {
	find := func() (prometheus.Counter, []codeCounter) {
		l := cc.list.Load()
		if l == nil {
			return nil, nil
		}
		for _, e := range *l {
			if e.code == code {
				return e.c, nil
			}
		}
		return nil, *l
	}
	if c, _ := find(); c != nil {
		return c
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c, old := find()
	if c != nil {
		return c
	}
	c = rm.m.requests.WithLabelValues(rm.name, methods[method], strconv.Itoa(code))
	l := append(slices.Clip(old), codeCounter{code, c})
	cc.list.Store(&l)
	return c
}
