package sim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// DefaultIMSEndpoint and DefaultMetascope are what a real service
// credentials download for AEM as a Cloud Service carries.
const (
	DefaultIMSEndpoint = "ims-na1.adobelogin.com"
	DefaultMetascope   = "ent_aem_cloud_api"
)

// CredentialOptions configure NewCredentials. Zero fields get realistic
// random or default values.
type CredentialOptions struct {
	// Bits is the RSA key size; 0 means 2048, the size Adobe generates. Go
	// refuses keys under 1024 bits.
	Bits int
	// NotBefore and NotAfter bound the certificate; zero means from an hour
	// before Now to 365 days after.
	NotBefore, NotAfter time.Time
	// Now is the clock for the certificate's defaults; nil means time.Now.
	Now func() time.Time

	IMSEndpoint        string
	ClientID           string
	ClientSecret       string
	Org                string
	TechnicalAccountID string
	Email              string
	Metascopes         []string
}

// Credentials are a generated technical account: what AEM's Developer
// Console would hand out, with its private key and self-signed certificate.
// Register them with an IMS and render them with JSON.
type Credentials struct {
	IMSEndpoint        string
	ClientID           string
	ClientSecret       string
	Org                string
	TechnicalAccountID string
	Email              string
	Metascopes         []string
	Key                *rsa.PrivateKey
	Cert               *x509.Certificate
}

// NewCredentials generates a key pair and a certificate for a new technical
// account.
func NewCredentials(o CredentialOptions) (*Credentials, error) {
	bits := o.Bits
	if bits == 0 {
		bits = 2048
	}
	if bits < 1024 {
		return nil, fmt.Errorf("generate credentials: %d-bit RSA keys are too small (minimum 1024)", bits)
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("generate credentials: RSA key: %w", err)
	}
	c := &Credentials{
		IMSEndpoint:        credDefault(o.IMSEndpoint, DefaultIMSEndpoint),
		ClientID:           credDefault(o.ClientID, "cm-p"+credDigits(5)+"-e"+credDigits(6)+"-integration"),
		ClientSecret:       credDefault(o.ClientSecret, "p8e-"+credHex(16)),
		Org:                credDefault(o.Org, strings.ToUpper(credHex(12))+"@AdobeOrg"),
		TechnicalAccountID: credDefault(o.TechnicalAccountID, strings.ToUpper(credHex(12))+"@techacct.adobe.com"),
		Email:              credDefault(o.Email, credHex(16)+"@techacct.adobe.com"),
		Metascopes:         append([]string(nil), o.Metascopes...),
		Key:                key,
	}
	if len(c.Metascopes) == 0 {
		c.Metascopes = []string{DefaultMetascope}
	}

	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	notBefore := o.NotBefore
	if notBefore.IsZero() {
		notBefore = now().Add(-time.Hour)
	}
	notAfter := o.NotAfter
	if notAfter.IsZero() {
		notAfter = notBefore.Add(365 * 24 * time.Hour)
	}
	if !notAfter.After(notBefore) {
		return nil, errors.New("generate credentials: certificate NotAfter is not after NotBefore")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, fmt.Errorf("generate credentials: serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: c.ClientID, Organization: []string{c.Org}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("generate credentials: certificate: %w", err)
	}
	if c.Cert, err = x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("generate credentials: certificate: %w", err)
	}
	return c, nil
}

// String describes c without its secret or key.
func (c Credentials) String() string {
	return fmt.Sprintf("sim.Credentials{client_id=%q org=%q ims=%q}", c.ClientID, c.Org, c.IMSEndpoint)
}

// GoString keeps %#v from printing the secret and key.
func (c Credentials) GoString() string { return c.String() }

// KeyFormat is how a private key is encoded in PEM.
type KeyFormat int

const (
	// PKCS1 is "RSA PRIVATE KEY", what the Developer Console downloads.
	PKCS1 KeyFormat = iota
	// PKCS8 is "PRIVATE KEY", what openssl writes by default.
	PKCS8
)

// Newline is how PEM line breaks appear in the JSON string values.
type Newline int

const (
	// CRLF is what the Developer Console downloads.
	CRLF Newline = iota
	// LF is what an editor on Unix may leave after re-saving.
	LF
	// EscapedLF is a literal backslash-n, as when a key went through an
	// environment variable.
	EscapedLF
)

// JSONOptions choose a variant of the service credentials file.
type JSONOptions struct {
	KeyFormat KeyFormat
	Newline   Newline
	// NoStatus omits the outer "ok" and "statusCode" fields.
	NoStatus bool
	// NoPublicKey omits integration.publicKey.
	NoPublicKey bool
}

// PrivateKeyPEM returns c's private key as PEM with LF line breaks.
func (c *Credentials) PrivateKeyPEM(f KeyFormat) ([]byte, error) {
	switch f {
	case PKCS1:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(c.Key)}), nil
	case PKCS8:
		der, err := x509.MarshalPKCS8PrivateKey(c.Key)
		if err != nil {
			return nil, fmt.Errorf("encode private key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("encode private key: unknown key format %d", f)
}

// CertificatePEM returns c's certificate as PEM with LF line breaks.
func (c *Credentials) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// JSON renders c in the service credentials download format (spec §1).
func (c *Credentials) JSON(o JSONOptions) ([]byte, error) {
	keyPEM, err := c.PrivateKeyPEM(o.KeyFormat)
	if err != nil {
		return nil, fmt.Errorf("render service credentials: %w", err)
	}
	var nl string
	switch o.Newline {
	case CRLF:
		nl = "\r\n"
	case LF:
		nl = "\n"
	case EscapedLF:
		nl = `\n`
	default:
		return nil, fmt.Errorf("render service credentials: unknown newline form %d", o.Newline)
	}
	fix := func(b []byte) string { return strings.ReplaceAll(string(b), "\n", nl) }

	type technicalAccount struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	type integration struct {
		IMSEndpoint      string           `json:"imsEndpoint"`
		Metascopes       string           `json:"metascopes"`
		TechnicalAccount technicalAccount `json:"technicalAccount"`
		Email            string           `json:"email"`
		ID               string           `json:"id"`
		Org              string           `json:"org"`
		PrivateKey       string           `json:"privateKey"`
		PublicKey        string           `json:"publicKey,omitempty"`
	}
	type download struct {
		OK          *bool       `json:"ok,omitempty"`
		StatusCode  *int        `json:"statusCode,omitempty"`
		Integration integration `json:"integration"`
	}
	d := download{Integration: integration{
		IMSEndpoint:      c.IMSEndpoint,
		Metascopes:       strings.Join(c.Metascopes, ","),
		TechnicalAccount: technicalAccount{ClientID: c.ClientID, ClientSecret: c.ClientSecret},
		Email:            c.Email,
		ID:               c.TechnicalAccountID,
		Org:              c.Org,
		PrivateKey:       fix(keyPEM),
	}}
	if !o.NoPublicKey {
		d.Integration.PublicKey = fix(c.CertificatePEM())
	}
	if !o.NoStatus {
		ok, status := true, 200
		d.OK, d.StatusCode = &ok, &status
	}
	return json.MarshalIndent(d, "", "  ")
}

func credDefault(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

func credHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

func credDigits(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}
