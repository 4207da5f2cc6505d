package ims

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// DefaultHTTPTimeout bounds one request to IMS, from dial to the end of the
// body.
const DefaultHTTPTimeout = 30 * time.Second

// HTTPClientOptions configure the HTTP client that talks to IMS. The zero
// value uses the system roots, the proxy environment and a 30 s timeout.
type HTTPClientOptions struct {
	// TLSConfig is the TLS of connections to IMS: extra root certificates
	// (e.g. a TLS-inspecting egress proxy's), a client certificate, a server
	// name; see package egress, which builds it. The client uses a copy.
	// Nil means the system roots and TLS 1.2 or later.
	TLSConfig *tls.Config
	// ProxyURL is the proxy for IMS requests; nil means HTTPS_PROXY,
	// HTTP_PROXY and NO_PROXY from the environment, unless Direct is set.
	ProxyURL *url.URL
	// Direct connects to IMS with no proxy, whatever the environment says.
	Direct bool
	// Timeout bounds each request; 0 means DefaultHTTPTimeout.
	Timeout time.Duration
}

// NewHTTPClient returns an HTTP client for IMS alone: its own transport
// (cloned from http.DefaultTransport), bounded by timeouts, and never
// following redirects, so a form carrying the client secret is never re-sent
// to another host.
func NewHTTPClient(o HTTPClientOptions) (*http.Client, error) {
	if o.Timeout < 0 {
		return nil, fmt.Errorf("new IMS HTTP client: negative timeout %v", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultHTTPTimeout
	}
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:   true,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		}
	}
	t.Proxy = http.ProxyFromEnvironment
	if o.Direct {
		if o.ProxyURL != nil {
			return nil, fmt.Errorf("new IMS HTTP client: both Direct and a proxy URL given; choose one")
		}
		t.Proxy = nil
	}
	if o.ProxyURL != nil {
		switch o.ProxyURL.Scheme {
		case "http", "https", "socks5", "socks5h":
		default:
			return nil, fmt.Errorf("new IMS HTTP client: proxy URL %q: scheme must be http, https or socks5", o.ProxyURL.Redacted())
		}
		if o.ProxyURL.Host == "" {
			return nil, fmt.Errorf("new IMS HTTP client: proxy URL %q: no host", o.ProxyURL.Redacted())
		}
		t.Proxy = http.ProxyURL(o.ProxyURL)
	}
	t.ResponseHeaderTimeout = o.Timeout
	t.MaxIdleConnsPerHost = 2
	// A copy: the transport adds its ALPN protocols to the one it holds.
	t.TLSClientConfig = o.TLSConfig.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: t,
		Timeout:   o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}
