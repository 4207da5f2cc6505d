// Package egress loads the TLS side of aemproxy's outbound connections, to
// IMS and to each upstream: CA certificates trusted besides the system
// roots, a client certificate for mutual TLS (an egress gateway, or an AEM
// or dispatcher that requires one), and a server name to send and verify
// instead of the dialed host's.
//
// A client certificate is re-read when its files change on disk, so that a
// pair renewed by cert-manager or a Vault agent is used without a restart.
package egress

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/reload"
)

// checkInterval is how often, at most, a handshake looks at whether the
// client certificate files changed.
const checkInterval = 2 * time.Second

// TLS names the TLS settings of one kind of outbound connection. The zero
// value means the system roots, no client certificate and the dialed host's
// name. TLS is comparable, so that equal settings can share one Client.
//
// Errors about the settings begin with the configuration key of the setting
// they are about (ca_file, client_cert_file, client_key_file, server_name),
// so that a caller can put the section in front ("ims." or a route's).
// They name files, never what a key file holds.
type TLS struct {
	// CAFile is a PEM bundle trusted in addition to the system roots.
	CAFile string
	// CertFile is the PEM client certificate chain, leaf first, and KeyFile
	// the unencrypted PEM private key of its leaf (PKCS#8, PKCS#1 or
	// SEC 1). Give both or neither.
	CertFile string
	KeyFile  string
	// ServerName is sent as SNI and is the name the server's certificate
	// must be valid for, instead of the host dialed (for example when AEM
	// is reached through an IP address or an internal load balancer).
	ServerName string
}

// Check reads the files and reports every problem Load would find: a
// certificate without its key or the reverse, a file that cannot be read,
// no PEM certificate or private key where one belongs, an encrypted key, a
// key that does not match its certificate, a server name that is not a
// host name or IP address. It keeps nothing.
func (t TLS) Check() []error {
	_, problems := t.load(nil, zerolog.Nop())
	return problems
}

// settingProblems reports what is wrong with the settings themselves,
// without reading the files.
func (t TLS) settingProblems() []error {
	var problems []error
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		problems = append(problems, errors.New("client_key_file: missing; client_cert_file needs the private key of its certificate"))
	case t.CertFile == "" && t.KeyFile != "":
		problems = append(problems, errors.New("client_cert_file: missing; client_key_file needs the certificate it belongs to"))
	}
	if t.ServerName != "" {
		if err := checkServerName(t.ServerName); err != nil {
			problems = append(problems, fmt.Errorf("server_name: %w", err))
		}
	}
	return problems
}

// checkServerName accepts a DNS host name or an IP address, nothing else.
func checkServerName(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	if strings.Contains(s, "://") || strings.ContainsAny(s, ":/") {
		return fmt.Errorf("%q is not a host name; give the name alone, without scheme, port or path", s)
	}
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", s[:20]+"...")
	}
	for _, label := range strings.Split(s, ".") {
		ok := len(label) > 0 && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-'
		for _, c := range label {
			ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-')
		}
		if !ok {
			return fmt.Errorf("%q is not a host name: labels of letters, digits and '-', separated by dots, no trailing dot or wildcard", s)
		}
	}
	return nil
}

// A Client is TLS settings loaded: the tls.Config for dialing and, with a
// client certificate, the pair currently presented. It is safe for
// concurrent use.
type Client struct {
	conf *tls.Config
	pair *reload.Value[*tls.Certificate] // nil without a client certificate
}

// Load reads the files of t and returns the Client, or an error that
// joins every problem, each saying what to fix. now is the clock of the
// client certificate's change checks (nil means time.Now); log receives a
// line when a renewed pair is taken or refused.
func (t TLS) Load(now func() time.Time, log zerolog.Logger) (*Client, error) {
	c, problems := t.load(now, log)
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return c, nil
}

func (t TLS) load(now func() time.Time, log zerolog.Logger) (*Client, []error) {
	problems := t.settingProblems()
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := certPool(t.CAFile)
		if err != nil {
			problems = append(problems, fmt.Errorf("ca_file: %w", err))
		}
		conf.RootCAs = pool
	}
	c := &Client{conf: conf}
	if t.CertFile != "" && t.KeyFile != "" {
		pair, err := loadClientPair(t.CertFile, t.KeyFile, now, log)
		if err != nil {
			problems = append(problems, unjoin(err)...)
		} else {
			c.pair = pair
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return pair.Get(), nil
			}
		}
	}
	return c, problems
}

// Config returns a new tls.Config for connections with these settings: TLS
// 1.2 or later, RootCAs nil (the system roots) or the system roots and
// CAFile, ServerName, and the client certificate, re-read on a new
// handshake when its files changed (looked at no more than every 2 s).
// The caller may change the copy it gets.
func (c *Client) Config() *tls.Config { return c.conf.Clone() }

// Reload re-reads the client certificate files now (SIGHUP), waiting for
// a check in progress. A broken pair is refused with the reason and the
// current one kept. Without a client certificate it does nothing.
func (c *Client) Reload() error {
	if c.pair == nil {
		return nil
	}
	return c.pair.Reload()
}

// NotAfter is when the client certificate presented now expires; zero
// without a client certificate.
func (c *Client) NotAfter() time.Time {
	if c.pair == nil {
		return time.Time{}
	}
	return c.pair.Current().Leaf.NotAfter
}

// certPool returns the system roots plus the certificates of the PEM file
// at path (just those when the system has no pool).
func certPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate (want -----BEGIN CERTIFICATE----- blocks)", path)
	}
	return pool, nil
}

// loadClientPair reads the client certificate and key, and re-reads them
// when their files change, at most every checkInterval, on a new
// handshake; the others go on at once with the current pair. A reading that
// fails keeps the previous pair and is logged once.
func loadClientPair(certFile, keyFile string, now func() time.Time, log zerolog.Logger) (*reload.Value[*tls.Certificate], error) {
	log = log.With().Str("cert_file", certFile).Logger()
	return reload.NewValue([]string{certFile, keyFile}, checkInterval, now,
		func() (*tls.Certificate, error) {
			if _, err := reload.Stat(certFile, keyFile); err != nil {
				return nil, pathKeyError(err, certFile, keyFile)
			}
			return loadPair(certFile, keyFile)
		},
		reload.Events[*tls.Certificate]{
			Loaded: func(old, cur *tls.Certificate) {
				// SIGHUP reads the files whether or not they changed.
				if !bytes.Equal(old.Leaf.Raw, cur.Leaf.Raw) {
					log.Info().Time("not_after", cur.Leaf.NotAfter).Msg("client certificate reloaded")
				}
			},
			Refused: func(err error) {
				log.Warn().Err(err).Msg("client certificate files refused; keeping the current certificate")
			},
			Unreadable: func(err error) {
				log.Warn().Err(err).Msg("client certificate files unreadable; keeping the current certificate")
			},
		})
}

// unjoin returns the errors joined in err, or err alone, so that each
// problem keeps its own line and key.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// pathKeyError puts the key of the file a *PathError is about in front.
func pathKeyError(err error, certFile, keyFile string) error {
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Path == keyFile {
		return fmt.Errorf("client_key_file: %w", err)
	}
	return fmt.Errorf("client_cert_file: %w", err)
}

// loadPair reads a certificate chain and its private key. Its errors never
// repeat what the key file holds.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("client_cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("client_key_file: %w", err)
	}
	chain, certErr := parseChain(certFile, certPEM)
	key, keyErr := parseKey(keyFile, keyPEM)
	if err := errors.Join(certErr, keyErr); err != nil {
		return nil, err
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("client_key_file: %s does not match the certificate in client_cert_file %s; give the key the certificate was issued for (a renewed certificate with the old key, or the reverse?)", keyFile, certFile)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// parseChain returns the certificates of the PEM data, leaf first.
func parseChain(file string, data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	sawKey := false
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("client_cert_file: %s: certificate %d does not parse: %w", file, len(chain)+1, err)
			}
			chain = append(chain, c)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			sawKey = true
		}
	}
	if len(chain) == 0 {
		hint := ""
		if sawKey {
			hint = "; it holds a private key: are client_cert_file and client_key_file swapped?"
		}
		return nil, fmt.Errorf("client_cert_file: %s holds no PEM certificate (want a -----BEGIN CERTIFICATE----- block)%s", file, hint)
	}
	return chain, nil
}

// parseKey returns the first private key of the PEM data. Its errors name
// the file and the kind of block, never the block's content.
func parseKey(file string, data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue // a certificate or EC PARAMETERS next to the key
		}
		// RFC 5958 encrypted PKCS#8, or OpenSSL's legacy encrypted PEM
		// (RFC 1421 headers).
		if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("client_key_file: %s holds an encrypted private key; decrypt it (openssl pkey -in encrypted.key -out plain.key) and keep the file readable only by aemproxy; encrypted keys are not supported", file)
		}
		var key any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		}
		if err != nil {
			// The parse error is left out: it describes the key's bytes.
			return nil, fmt.Errorf("client_key_file: %s: the %s block is not a valid private key (want PKCS#8, PKCS#1 RSA or SEC 1 EC)", file, b.Type)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("client_key_file: %s: a %T cannot sign; want an RSA, ECDSA or Ed25519 key", file, key)
		}
		return s, nil
	}
	return nil, fmt.Errorf("client_key_file: %s holds no PEM private key (want a -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY block)", file)
}
