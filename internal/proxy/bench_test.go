package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// BenchmarkServeHTTP measures the per-request path: routing, token,
// header rewriting, the round trip to a local upstream over loopback,
// access log and metrics. The client side is a reused in-memory
// ResponseWriter, so what is counted is the proxy and its transport.
func BenchmarkServeHTTP(b *testing.B) {
	body := []byte(`{"data":{"ok":true}}`)
	aem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer aem.Close()
	tr, err := NewTransport(TransportOptions{Direct: true})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	h, err := New(Options{
		Routes: []Route{
			{Name: "publish", Upstream: mustURL(b, aem.URL), Hosts: []string{"publish.example"}, Transport: tr},
			{Name: "author", Upstream: mustURL(b, aem.URL), PathPrefix: "/content", Tokens: newTokens(), Transport: tr},
		},
		Logger:  zerolog.New(io.Discard),
		Metrics: NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		b.Fatal(err)
	}
	newReq := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/content/dam/a.json?x=1", nil)
		r.Host = "proxy.example"
		r.Header.Set("User-Agent", "bench")
		r.Header.Set("Accept", "application/json")
		return r
	}

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		r, w := newReq(), &recorder{h: http.Header{}}
		for b.Loop() {
			w.reset()
			h.ServeHTTP(w, r)
			if w.status != 200 || w.n != len(body) {
				b.Fatalf("got %d, %d bytes", w.status, w.n)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r, w := newReq(), &recorder{h: http.Header{}}
			for pb.Next() {
				w.reset()
				h.ServeHTTP(w, r)
				if w.status != 200 {
					b.Errorf("status %d", w.status)
					return
				}
			}
		})
	})
}

// BenchmarkServeHTTPNoNetwork is BenchmarkServeHTTP with an in-memory
// upstream, leaving only what the proxy itself (with ReverseProxy) costs.
func BenchmarkServeHTTPNoNetwork(b *testing.B) {
	body := []byte(`{"data":{"ok":true}}`)
	upstream := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode:    200,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Request:       r,
		}, nil
	})
	h, err := New(Options{
		Routes:  []Route{{Name: "author", Upstream: mustURL(b, "https://author-p1-e2.adobeaemcloud.com"), Tokens: newTokens(), Transport: upstream}},
		Logger:  zerolog.New(io.Discard),
		Metrics: NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/content/dam/a.json?x=1", nil)
	r.Host = "proxy.example"
	w := &recorder{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, r)
		if w.status != 200 || w.n != len(body) {
			b.Fatalf("got %d, %d bytes", w.status, w.n)
		}
	}
}
