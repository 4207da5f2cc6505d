package ims

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/egress"
)

func TestNewHTTPClientTLSConfig(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake without the CA fails on purpose
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	plain, err := NewHTTPClient(HTTPClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Get(srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET without the CA: error = %v; want a certificate error", err)
	}

	eg, err := egress.TLS{CAFile: caFile}.Load(nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	conf := eg.Config()
	withCA, err := NewHTTPClient(HTTPClientOptions{TLSConfig: conf})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := withCA.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET with the CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status = %d; want 200", resp.StatusCode)
	}
	if len(conf.NextProtos) != 0 {
		t.Errorf("the caller's tls.Config was changed: NextProtos %q", conf.NextProtos)
	}
}

func TestNewHTTPClientRejects(t *testing.T) {
	tests := []struct {
		name string
		o    HTTPClientOptions
		want string
	}{
		{"proxy scheme", HTTPClientOptions{ProxyURL: &url.URL{Scheme: "ftp", Host: "p"}}, `proxy URL "ftp://p": scheme must be http, https or socks5`},
		{"proxy without host", HTTPClientOptions{ProxyURL: &url.URL{Scheme: "http"}}, "no host"},
		{"negative timeout", HTTPClientOptions{Timeout: -time.Second}, "new IMS HTTP client: negative timeout -1s"},
		{"direct and a proxy", HTTPClientOptions{Direct: true, ProxyURL: &url.URL{Scheme: "http", Host: "p"}}, "both Direct and a proxy URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewHTTPClient(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewHTTPClient error = %v; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestNewHTTPClientProxyAndRedirects(t *testing.T) {
	var gotURL string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotURL = r.URL.String()
		http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
	}))
	defer proxy.Close()
	proxyURL, _ := url.Parse(proxy.URL)
	c, err := NewHTTPClient(HTTPClientOptions{ProxyURL: proxyURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout != 5*time.Second {
		t.Errorf("Timeout = %v; want 5s", c.Timeout)
	}
	resp, err := c.Get("http://ims.example.invalid/ims/exchange/jwt")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if gotURL != "http://ims.example.invalid/ims/exchange/jwt" {
		t.Errorf("proxy saw %q; want the absolute IMS URL", gotURL)
	}
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status = %d; want 302 (redirects are not followed)", resp.StatusCode)
	}

	d, err := NewHTTPClient(HTTPClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Timeout != DefaultHTTPTimeout {
		t.Errorf("default Timeout = %v; want %v", d.Timeout, DefaultHTTPTimeout)
	}
	if tr := d.Transport.(*http.Transport); tr.Proxy == nil || tr.TLSClientConfig == nil || tr.ResponseHeaderTimeout != DefaultHTTPTimeout {
		t.Errorf("transport not set up: proxy func %v, TLS config %v, header timeout %v", tr.Proxy != nil, tr.TLSClientConfig, tr.ResponseHeaderTimeout)
	}
}

func TestNewHTTPClientDirectIgnoresEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	c, err := NewHTTPClient(HTTPClientOptions{Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Transport.(*http.Transport); tr.Proxy != nil {
		req, _ := http.NewRequest(http.MethodGet, "https://ims-na1.adobelogin.com/", nil)
		u, _ := tr.Proxy(req)
		t.Errorf("Direct: transport still proxies via %v; want no proxy", u)
	}
}
