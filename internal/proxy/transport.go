package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// TransportOptions size and aim the transport to AEM. Zero values take the
// defaults named on each field.
type TransportOptions struct {
	// TLSConfig is the TLS of connections to AEM: extra root certificates,
	// a client certificate, a server name; see package egress, which builds
	// it. The transport uses a copy. Nil means the system roots.
	TLSConfig *tls.Config
	// ProxyURL is the outbound HTTP proxy for AEM (separate from IMS's).
	// Nil uses HTTPS_PROXY/HTTP_PROXY/NO_PROXY unless Direct is set.
	ProxyURL *url.URL
	// Direct connects to AEM with no outbound proxy, whatever the
	// environment says.
	Direct bool
	// DialTimeout bounds a TCP connect (default 10s).
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds a TLS handshake (default 10s).
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for AEM's response headers once
	// the request is sent (default 60s). The body is not bounded: asset
	// downloads stream for as long as they take.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes connections idle this long (default 90s).
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle connections to AEM are kept
	// (default 256; a proxy sends all its traffic to very few hosts).
	MaxIdleConnsPerHost int
}

const (
	defaultDialTimeout           = 10 * time.Second
	defaultTLSHandshakeTimeout   = 10 * time.Second
	defaultResponseHeaderTimeout = 60 * time.Second
	defaultIdleConnTimeout       = 90 * time.Second
	defaultMaxIdleConnsPerHost   = 256
)

// NewTransport returns a transport for proxying to AEM: a clone of
// http.DefaultTransport sized for a proxy, with HTTP/2 attempted, no
// transparent compression (the client's Accept-Encoding decides), and the
// options applied. Like every http.Transport it never follows redirects.
func NewTransport(o TransportOptions) (*http.Transport, error) {
	if o.Direct && o.ProxyURL != nil {
		return nil, errors.New("both Direct and a proxy URL given; choose one")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"dial timeout", o.DialTimeout},
		{"TLS handshake timeout", o.TLSHandshakeTimeout},
		{"response header timeout", o.ResponseHeaderTimeout},
		{"idle connection timeout", o.IdleConnTimeout},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("%s %v is negative", d.name, d.v)
		}
	}
	if o.MaxIdleConnsPerHost < 0 {
		return nil, fmt.Errorf("max idle connections per host %d is negative", o.MaxIdleConnsPerHost)
	}

	t := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: orDefault(o.DialTimeout, defaultDialTimeout), KeepAlive: 30 * time.Second}
	t.DialContext = dialUploads(dialer.DialContext)
	t.TLSHandshakeTimeout = orDefault(o.TLSHandshakeTimeout, defaultTLSHandshakeTimeout)
	t.ResponseHeaderTimeout = orDefault(o.ResponseHeaderTimeout, defaultResponseHeaderTimeout)
	t.IdleConnTimeout = orDefault(o.IdleConnTimeout, defaultIdleConnTimeout)
	t.MaxIdleConnsPerHost = orDefault(o.MaxIdleConnsPerHost, defaultMaxIdleConnsPerHost)
	t.MaxIdleConns = 4 * t.MaxIdleConnsPerHost
	t.ForceAttemptHTTP2 = true
	// The client asked for an encoding or not; decompressing on its behalf
	// would cost CPU and drop Content-Length on multi-GiB assets.
	t.DisableCompression = true
	// Larger buffers than the 4 KiB default for asset streaming.
	t.ReadBufferSize = 32 << 10
	t.WriteBufferSize = 32 << 10

	switch {
	case o.Direct:
		t.Proxy = nil
	case o.ProxyURL != nil:
		if err := checkProxyURL(o.ProxyURL); err != nil {
			return nil, err
		}
		t.Proxy = http.ProxyURL(o.ProxyURL)
	default:
		t.Proxy = http.ProxyFromEnvironment
	}

	// A copy: the transport adds its ALPN protocols to the one it holds,
	// and routes with the same settings may share one tls.Config.
	if o.TLSConfig != nil {
		t.TLSClientConfig = o.TLSConfig.Clone()
	}
	return t, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func checkProxyURL(u *url.URL) error {
	switch {
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5":
		return fmt.Errorf("proxy URL %s: scheme must be http, https or socks5", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("proxy URL %s: no host", u.Redacted())
	}
	return nil
}
