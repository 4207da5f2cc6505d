package proxy

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/egress"
)

func TestNewTransportDefaults(t *testing.T) {
	tr, err := NewTransport(TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.ResponseHeaderTimeout != defaultResponseHeaderTimeout || tr.MaxIdleConnsPerHost != defaultMaxIdleConnsPerHost ||
		tr.IdleConnTimeout != defaultIdleConnTimeout || tr.TLSHandshakeTimeout != defaultTLSHandshakeTimeout ||
		!tr.ForceAttemptHTTP2 || !tr.DisableCompression || tr.MaxIdleConns < tr.MaxIdleConnsPerHost {
		t.Errorf("transport not sized for a proxy: %+v", tr)
	}
	if tr.Proxy == nil {
		t.Error("Proxy is nil; want the environment's")
	}

	tr, err = NewTransport(TransportOptions{ResponseHeaderTimeout: time.Second, MaxIdleConnsPerHost: 8, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	if tr.ResponseHeaderTimeout != time.Second || tr.MaxIdleConnsPerHost != 8 || tr.Proxy != nil {
		t.Errorf("options not applied: header timeout %v, idle per host %d, proxy set %v", tr.ResponseHeaderTimeout, tr.MaxIdleConnsPerHost, tr.Proxy != nil)
	}
}

func TestNewTransportProxyURL(t *testing.T) {
	egress := mustURL(t, "http://egress.corp.example:3128")
	tr, err := NewTransport(TransportOptions{ProxyURL: egress})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://author-p1-e2.adobeaemcloud.com/", nil)
	got, err := tr.Proxy(req)
	if err != nil || got.String() != egress.String() {
		t.Errorf("Proxy = %v, %v; want %v", got, err, egress)
	}

	for name, o := range map[string]TransportOptions{
		"direct and proxy": {Direct: true, ProxyURL: egress},
		"bad proxy scheme": {ProxyURL: mustURL(t, "ftp://x")},
		"negative timeout": {DialTimeout: -time.Second},
	} {
		if _, err := NewTransport(o); err == nil {
			t.Errorf("%s: NewTransport succeeded; want an error", name)
		}
	}
}

func TestNewTransportTLSConfig(t *testing.T) {
	aem := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls ok") }))
	defer aem.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: aem.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	eg, err := egress.TLS{CAFile: ca}.Load(nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	conf := eg.Config()
	tr, err := NewTransport(TransportOptions{TLSConfig: conf, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	p := newProxy(t, nil, Route{Name: "author", Upstream: mustURL(t, aem.URL), Transport: tr, Tokens: newTokens()})
	res := get(t, p.URL+"/content")
	if res.StatusCode != 200 || string(res.body) != "tls ok" {
		t.Errorf("got %d %q; want 200 from the TLS upstream trusted through the CA file", res.StatusCode, res.body)
	}
	if len(conf.NextProtos) != 0 {
		t.Errorf("the caller's tls.Config was changed: NextProtos %q", conf.NextProtos)
	}
}
