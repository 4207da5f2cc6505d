package ops

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aemproxy/aemproxy/internal/ims"
)

// IMSMetrics records IMS exchanges as they happen.
type IMSMetrics struct {
	duration *prometheus.HistogramVec
}

// NewIMSMetrics registers the IMS exchange histogram on reg.
func NewIMSMetrics(reg prometheus.Registerer) *IMSMetrics {
	m := &IMSMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aemproxy_ims_exchange_duration_seconds",
			Help:    "Duration of IMS token exchanges by route and result (success, transient_error, permanent_error).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "result"}),
	}
	reg.MustRegister(m.duration)
	return m
}

// Observer returns a hook for ims.CacheOptions.OnFetch that records each
// exchange of the named route.
func (m *IMSMetrics) Observer(route string) func(time.Duration, error) {
	return func(d time.Duration, err error) {
		m.duration.WithLabelValues(route, fetchResult(err)).Observe(d.Seconds())
	}
}

func fetchResult(err error) string {
	switch {
	case err == nil:
		return "success"
	case ims.IsPermanent(err):
		return "permanent_error"
	default:
		return "transient_error"
	}
}

// tokenCollector reads every route's token cache at scrape time, so the
// request path never touches a metric for token state.
type tokenCollector struct {
	routes    []Route
	expiry    *prometheus.Desc
	valid     *prometheus.Desc
	refreshes *prometheus.Desc
	failures  *prometheus.Desc
	cert      *prometheus.Desc
}

// RegisterTokenMetrics registers gauges and counters describing each
// route's token: expiry, validity, refreshes by result, consecutive
// failures and the service credentials' certificate expiry.
func RegisterTokenMetrics(reg prometheus.Registerer, routes []Route) error {
	return reg.Register(&tokenCollector{
		routes: routes,
		expiry: prometheus.NewDesc("aemproxy_token_expiry_timestamp_seconds",
			"When the route's current IMS access token expires (Unix seconds).", []string{"route"}, nil),
		valid: prometheus.NewDesc("aemproxy_token_valid",
			"1 if the route holds a usable IMS access token.", []string{"route"}, nil),
		refreshes: prometheus.NewDesc("aemproxy_token_refreshes_total",
			"IMS token fetches by result.", []string{"route", "result"}, nil),
		failures: prometheus.NewDesc("aemproxy_token_consecutive_failures",
			"IMS token fetches that failed in a row.", []string{"route"}, nil),
		cert: prometheus.NewDesc("aemproxy_certificate_expiry_timestamp_seconds",
			"When the service credentials' certificate (publicKey) expires (Unix seconds).", []string{"route"}, nil),
	})
}

func (c *tokenCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.valid
	ch <- c.refreshes
	ch <- c.failures
	ch <- c.cert
}

func (c *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	for _, rt := range c.routes {
		if rt.Tokens == nil {
			continue
		}
		s := rt.Tokens.State()
		valid := 0.0
		if s.Valid {
			valid = 1
		}
		ch <- prometheus.MustNewConstMetric(c.valid, prometheus.GaugeValue, valid, rt.Name)
		if !s.TokenExpiresAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, unix(s.TokenExpiresAt), rt.Name)
		}
		ch <- prometheus.MustNewConstMetric(c.refreshes, prometheus.CounterValue, float64(s.Exchanges-min(s.Failures, s.Exchanges)), rt.Name, "success")
		ch <- prometheus.MustNewConstMetric(c.refreshes, prometheus.CounterValue, float64(s.Failures), rt.Name, "failure")
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.GaugeValue, float64(s.ConsecutiveFailures), rt.Name)
		if !s.CertificateNotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.cert, prometheus.GaugeValue, unix(s.CertificateNotAfter), rt.Name)
		}
	}
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
