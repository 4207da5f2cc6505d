package proxy

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/ims"
)

// The benchmarks below measure the per-request path piece by piece, so that
// a change that adds allocations shows in allocs/op. They assert nothing
// about speed. bench/README.md records their numbers and bench/run.sh
// measures the whole program under load.

// benchToken is as long as an IMS access token (an RS256 JWT of about
// 1.2 KB), so that copying or rebuilding it shows in B/op.
var benchToken = "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("x", 1150) + ".sig"

// benchTokens returns the real token cache over a source that always hands
// out benchToken, valid for a day: Token takes the cache's fast path, as it
// does in steady state.
func benchTokens(b *testing.B) *ims.Cache {
	b.Helper()
	src := staticSource{ims.Token{AccessToken: benchToken, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(24 * time.Hour)}}
	c := ims.NewCache(src, ims.CacheOptions{})
	if _, err := c.Token(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c
}

type staticSource struct{ tok ims.Token }

func (s staticSource) Token(context.Context) (ims.Token, error) { return s.tok, nil }

// BenchmarkServeHTTP measures the per-request path: routing, token,
// header rewriting, the round trip to a local upstream over loopback,
// access log and metrics. The client side is a reused in-memory
// ResponseWriter, so what is counted is the proxy and its transport.
func BenchmarkServeHTTP(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
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
			{Name: "author", Upstream: mustURL(b, aem.URL), PathPrefix: "/content", Tokens: benchTokens(b), Transport: tr},
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

	benchServe(b, h, newReq, len(body))
}

// BenchmarkServeHTTPNoNetwork is BenchmarkServeHTTP with an in-memory
// upstream, leaving only what the proxy itself (with ReverseProxy) costs.
func BenchmarkServeHTTPNoNetwork(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
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
		Routes:  []Route{{Name: "author", Upstream: mustURL(b, "https://author-p1-e2.adobeaemcloud.com"), Tokens: benchTokens(b), Transport: upstream}},
		Logger:  zerolog.New(io.Discard),
		Metrics: NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		b.Fatal(err)
	}
	newReq := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/content/dam/a.json?x=1", nil)
		r.Host = "proxy.example"
		return r
	}
	benchServe(b, h, newReq, len(body))
}

// BenchmarkRewrite measures building the outbound request's URL and
// headers: X-Forwarded-*, header hygiene and the Authorization value.
func BenchmarkRewrite(b *testing.B) {
	h, err := New(Options{
		Routes: []Route{{Name: "author", Upstream: mustURL(b, "https://author-p1-e2.adobeaemcloud.com"), Tokens: benchTokens(b), Transport: http.DefaultTransport}},
		Logger: zerolog.New(io.Discard),
	})
	if err != nil {
		b.Fatal(err)
	}
	in := httptest.NewRequest(http.MethodGet, "/content/dam/a.json?x=1", nil)
	in.Host = "proxy.example"
	in.Header.Set("User-Agent", "bench")
	in.Header.Set("Accept", "application/json")
	in.Header.Set("Cookie", "a=b")
	in.Header.Set("Authorization", "Basic c3B5")
	out := in.Clone(context.Background())
	template := in.Header.Clone()
	target := *in.URL

	x := h.newExchange()
	x.in, x.route, x.id = in, h.routes[0], []string{"req-1"}
	tok, _ := x.route.tokens.Token(context.Background())
	x.token = tok.AccessToken
	pr := &httputil.ProxyRequest{In: in, Out: out}
	b.ReportAllocs()
	for b.Loop() {
		clear(out.Header)
		maps.Copy(out.Header, template)
		*out.URL = target
		x.rewrite(pr)
	}
	if got := out.Header["Authorization"]; len(got) != 1 || got[0] != "Bearer "+benchToken {
		b.Fatalf("Authorization not set")
	}
}

// BenchmarkAuthorization measures the Authorization value for the current
// token, which is built once per token and then shared.
func BenchmarkAuthorization(b *testing.B) {
	rt := &route{}
	b.ReportAllocs()
	for b.Loop() {
		if v := rt.authorization("", benchToken); len(v) != 1 {
			b.Fatal("no value")
		}
	}
}

// BenchmarkTokenLookup measures getting the route's token from the real
// cache in steady state, from all Ps at once.
func BenchmarkTokenLookup(b *testing.B) {
	c := benchTokens(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if tok, err := c.Token(ctx); err != nil || tok.AccessToken == "" {
				b.Errorf("Token: %v", err)
				return
			}
		}
	})
}

// BenchmarkRoute measures admitting and routing a request among several
// routes with hosts and prefixes.
func BenchmarkRoute(b *testing.B) {
	up := mustURL(b, "https://author-p1-e2.adobeaemcloud.com")
	h, err := New(Options{
		Routes: []Route{
			{Name: "publish", Upstream: up, Hosts: []string{"publish.example", "www.example"}, Transport: http.DefaultTransport},
			{Name: "assets", Upstream: up, PathPrefix: "/content/dam", Transport: http.DefaultTransport},
			{Name: "graphql", Upstream: up, PathPrefix: "/graphql", Transport: http.DefaultTransport},
			{Name: "author", Upstream: up, Transport: http.DefaultTransport},
		},
		Logger: zerolog.New(io.Discard),
	})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/content/dam/wknd/en/adventures/a.json?x=1", nil)
	r.Host = "proxy.example:8080"
	b.ReportAllocs()
	for b.Loop() {
		if err := h.admit(r); err != nil {
			b.Fatal(err)
		}
		if rt := h.match(r); rt == nil || rt.name != "assets" {
			b.Fatal("wrong route")
		}
	}
}

// BenchmarkRequestID measures minting a request id.
func BenchmarkRequestID(b *testing.B) {
	g := newRequestIDs()
	hdr := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		if g.requestID(hdr) == "" {
			b.Fatal("empty id")
		}
	}
}

// BenchmarkDownload streams a 64 MiB response with a Content-Length from a
// loopback upstream through the proxy to a loopback client, as an asset
// download does.
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	chunk := make([]byte, 256<<10)
	aem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer aem.Close()
	p := streamingProxy(b, aem.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Get(p.URL + "/content/dam/big.bin")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{res.Body}, buf)
		res.Body.Close()
		if err != nil || n != size {
			b.Fatalf("got %d bytes, %v", n, err)
		}
	}
}

func BenchmarkUpload(b *testing.B) {
	const size = 64 << 20
	aem := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256<<10)
		_, _ = io.CopyBuffer(io.Discard, struct{ io.Reader }{r.Body}, buf)
	}))
	defer aem.Close()
	p := streamingProxy(b, aem.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	body := make([]byte, size)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPut, p.URL+"/content/dam/big.bin", bytes.NewReader(body))
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// streamingProxy serves a proxy to upstream with its real transport, for
// the streaming benchmarks; it is closed when b ends.
func streamingProxy(b *testing.B, upstream string) *httptest.Server {
	tr, err := NewTransport(TransportOptions{Direct: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tr.CloseIdleConnections)
	h, err := New(Options{
		Routes: []Route{{Name: "author", Upstream: mustURL(b, upstream), Tokens: benchTokens(b), Transport: tr}},
		Logger: zerolog.New(io.Discard),
	})
	if err != nil {
		b.Fatal(err)
	}
	p := httptest.NewServer(h)
	b.Cleanup(p.Close)
	return p
}

// benchServe runs h on requests from newReq, serially and from all Ps,
// checking each answer is a 200 (with a want-byte body, serially).
func benchServe(b *testing.B, h http.Handler, newReq func() *http.Request, want int) {
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		r, w := newReq(), &recorder{h: http.Header{}}
		for b.Loop() {
			w.reset()
			h.ServeHTTP(w, r)
			if w.status != 200 || w.n != want {
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
