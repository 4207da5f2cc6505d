package ims

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// maxCredentialsBytes bounds what LoadServiceCredentials reads: a real
// download is about 4 KiB.
const maxCredentialsBytes = 1 << 20

// ServiceCredentials are the AEM as a Cloud Service "service credentials" of
// one technical account (spec §1). They carry secrets: String, GoString,
// MarshalJSON and MarshalZerologObject never reveal ClientSecret or
// PrivateKey.
type ServiceCredentials struct {
	// IMSEndpoint is the IMS host name, e.g. "ims-na1.adobelogin.com". It is
	// the JWT's audience and scope prefix, whatever URL the exchange is sent to.
	IMSEndpoint string
	ClientID    string
	// ClientSecret is the technical account's client secret.
	ClientSecret          Secret
	Org                   string
	TechnicalAccountID    string
	TechnicalAccountEmail string
	// Metascopes are the trimmed, non-empty entries of integration.metascopes.
	Metascopes []string
	// PrivateKey signs the JWT. Secret.
	PrivateKey *rsa.PrivateKey
	// Certificate is integration.publicKey, the certificate IMS verifies the
	// JWT with, or nil if the file has none. When set, its key matches
	// PrivateKey.
	Certificate *x509.Certificate
}

// FieldError is one problem with one field of a service credentials file. Its
// message names the JSON field and never contains the field's value when the
// field is secret.
type FieldError struct {
	// Field is the JSON path, e.g. "integration.privateKey".
	Field string
	// Problem says what is wrong, e.g. "not a PEM block".
	Problem string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// LoadServiceCredentials reads and parses the service credentials file at
// path. See ParseServiceCredentials.
func LoadServiceCredentials(path string) (*ServiceCredentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load service credentials: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load service credentials %s: %w", path, err)
	}
	if len(data) > maxCredentialsBytes {
		return nil, fmt.Errorf("load service credentials %s: file is larger than 1 MiB; is it a service credentials download?", path)
	}
	c, err := ParseServiceCredentials(data)
	if err != nil {
		return nil, fmt.Errorf("load service credentials %s: %w", path, err)
	}
	return c, nil
}

// ParseServiceCredentials parses a service credentials download, with or
// without the outer "ok"/"statusCode" object. The private key may be PKCS#1 or
// PKCS#8 PEM with CRLF, LF or literal "\n" line breaks. When publicKey is
// present it must be a certificate for the private key.
//
// On failure the error joins one *FieldError per problem found (errors.Join),
// so a person can fix the file in one pass; no message contains the client
// secret or key material.
func ParseServiceCredentials(data []byte) (*ServiceCredentials, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, describeJSONError(data, err)
	}
	if top == nil {
		return nil, &FieldError{Problem: "not a JSON object"}
	}
	if _, ok := top["accessToken"]; ok {
		return nil, &FieldError{Field: "accessToken", Problem: "this is a local development token file, not service credentials (use Get Service Credentials in the AEM Developer Console)"}
	}
	if _, ok := top["project"]; ok {
		return nil, &FieldError{Field: "project", Problem: "this is an Adobe Developer Console project file, not AEM service credentials"}
	}

	p := &credentialsParser{}
	p.checkStatus(top)

	// Without the "integration" object, accept the integration's fields at
	// the top level (the object on its own, as some tools save it).
	integration, prefix := top, ""
	if raw, ok := top["integration"]; ok {
		integration, prefix = nil, "integration."
		if err := json.Unmarshal(raw, &integration); err != nil || integration == nil {
			p.add("integration", "not a JSON object")
			return nil, p.err()
		}
	} else if _, ok := top["technicalAccount"]; !ok {
		p.add("integration", "missing")
		return nil, p.err()
	}
	c := p.parseIntegration(integration, prefix)
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// credentialsParser collects every problem found in one file.
type credentialsParser struct {
	problems []error
}

func (p *credentialsParser) add(field, problem string) {
	p.problems = append(p.problems, &FieldError{Field: field, Problem: problem})
}

func (p *credentialsParser) err() error { return errors.Join(p.problems...) }

func (p *credentialsParser) checkStatus(top map[string]json.RawMessage) {
	if raw, ok := top["ok"]; ok {
		var v bool
		switch err := json.Unmarshal(raw, &v); {
		case err != nil:
			p.add("ok", "not a boolean")
		case !v:
			p.add("ok", "false: the Developer Console did not return service credentials; download them again")
		}
	}
	if raw, ok := top["statusCode"]; ok {
		var v int
		switch err := json.Unmarshal(raw, &v); {
		case err != nil:
			p.add("statusCode", "not an integer")
		case v != 200:
			p.add("statusCode", "is "+strconv.Itoa(v)+", want 200: the Developer Console did not return service credentials")
		}
	}
}

func (p *credentialsParser) parseIntegration(in map[string]json.RawMessage, prefix string) *ServiceCredentials {
	c := &ServiceCredentials{}

	if v, ok := p.str(in, prefix, "imsEndpoint", true); ok {
		host, err := normalizeIMSEndpoint(v)
		if err != nil {
			p.add(prefix+"imsEndpoint", err.Error())
		}
		c.IMSEndpoint = host
	}
	c.Metascopes = p.metascopes(in, prefix+"metascopes")

	ta := prefix + "technicalAccount"
	var account map[string]json.RawMessage
	if raw, present := in["technicalAccount"]; !present || isNull(raw) {
		p.add(ta, "missing")
	} else if err := json.Unmarshal(raw, &account); err != nil {
		p.add(ta, "not a JSON object")
	} else {
		c.ClientID, _ = p.str(account, ta+".", "clientId", true)
		secret, _ := p.str(account, ta+".", "clientSecret", true)
		c.ClientSecret = Secret(secret)
	}

	c.TechnicalAccountID, _ = p.str(in, prefix, "id", true)
	c.Org, _ = p.str(in, prefix, "org", true)
	c.TechnicalAccountEmail, _ = p.str(in, prefix, "email", false)

	if v, ok := p.str(in, prefix, "privateKey", true); ok {
		key, problem := parsePrivateKey(v)
		if problem != "" {
			p.add(prefix+"privateKey", problem)
		}
		c.PrivateKey = key
	}
	if v, ok := p.str(in, prefix, "publicKey", false); ok && v != "" {
		cert, problem := parseCertificate(v)
		if problem != "" {
			p.add(prefix+"publicKey", problem)
		}
		c.Certificate = cert
	}
	if c.PrivateKey != nil && c.Certificate != nil {
		if pub, ok := c.Certificate.PublicKey.(*rsa.PublicKey); ok && !pub.Equal(&c.PrivateKey.PublicKey) {
			p.add(prefix+"publicKey", "does not match "+prefix+"privateKey (the certificate belongs to another key; download the service credentials again)")
		}
	}
	return c
}

// str reads the string field key of obj. It reports a problem and returns
// false if the field is not a string, or is missing or blank while required.
// The value itself never appears in a problem.
func (p *credentialsParser) str(obj map[string]json.RawMessage, prefix, key string, required bool) (string, bool) {
	field := prefix + key
	raw, present := obj[key]
	if !present || isNull(raw) {
		if required {
			p.add(field, "missing")
			return "", false
		}
		return "", true
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		p.add(field, "not a string")
		return "", false
	}
	v = strings.TrimSpace(v)
	if v == "" && required {
		p.add(field, "empty")
		return "", false
	}
	return v, true
}

// metascopes accepts the download's comma-separated string and, leniently, a
// JSON array of strings.
func (p *credentialsParser) metascopes(obj map[string]json.RawMessage, field string) []string {
	return p.scopeList(obj["metascopes"], field, "not a comma-separated string", cleanMetascopes)
}

// scopeList reads raw, a comma-separated string or a JSON array of strings,
// and cleans its entries, reporting problems under field.
func (p *credentialsParser) scopeList(raw json.RawMessage, field, badShape string, clean func([]string) ([]string, error)) []string {
	if raw == nil || isNull(raw) {
		p.add(field, "missing")
		return nil
	}
	var entries []string
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		entries = strings.Split(s, ",")
	} else if err := json.Unmarshal(raw, &entries); err != nil {
		p.add(field, badShape)
		return nil
	}
	scopes, err := clean(entries)
	if err != nil {
		p.add(field, err.Error())
		return nil
	}
	return scopes
}

// cleanMetascopes trims entries, drops empty ones and duplicates, and rejects
// an entry that cannot be part of a scope claim URL.
func cleanMetascopes(entries []string) ([]string, error) {
	var out []string
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || seen[e] {
			continue
		}
		if strings.ContainsFunc(e, func(r rune) bool { return r <= ' ' || r == '/' || r == 0x7f }) {
			return nil, fmt.Errorf("entry %q contains a space, control character or '/'", truncate(e, 64))
		}
		seen[e] = true
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

// normalizeIMSEndpoint turns "https://ims-na1.adobelogin.com/" into
// "ims-na1.adobelogin.com" and rejects anything that is not a bare host.
func normalizeIMSEndpoint(v string) (string, error) {
	host := strings.TrimSpace(v)
	if rest, ok := strings.CutPrefix(strings.ToLower(host), "https://"); ok {
		host = host[len(host)-len(rest):]
	} else if strings.Contains(host, "://") {
		return "", fmt.Errorf("%q: want a host name such as ims-na1.adobelogin.com (https is implied)", truncate(v, 100))
	}
	host = strings.TrimSuffix(host, "/")
	if host == "" {
		return "", errors.New("empty")
	}
	u, err := url.Parse("https://" + host)
	if err != nil || u.Host != host || u.User != nil || u.Hostname() == "" {
		return "", fmt.Errorf("%q is not a host name such as ims-na1.adobelogin.com (no path, query or user)", truncate(v, 100))
	}
	return strings.ToLower(host), nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// describeJSONError explains a JSON syntax or type error with a line and
// column, never quoting the surrounding input (it may be a secret).
func describeJSONError(data []byte, err error) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &FieldError{Problem: "empty file"}
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line, col := lineCol(data, syn.Offset)
		return &FieldError{Problem: fmt.Sprintf("not valid JSON: %v (line %d, column %d)", syn, line, col)}
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return &FieldError{Problem: "not a JSON object: the file holds a JSON " + typ.Value}
	}
	return &FieldError{Problem: "not valid JSON"}
}

func lineCol(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col
}

// normalizePEM undoes the ways PEM line breaks get mangled: CRLF from the
// download, and literal "\n" escapes from a value pasted into an environment
// variable (spec §1).
func normalizePEM(s string) string {
	s = strings.NewReplacer(`\r\n`, "\n", `\n`, "\n", `\r`, "\n", "\r\n", "\n", "\r", "\n").Replace(s)
	return strings.TrimSpace(s)
}

// decodePEM returns the first PEM block in s. It also accepts a block whose
// line breaks were replaced by spaces, by re-reading the base64 body between
// the BEGIN and END lines. problem is empty on success and never quotes s.
func decodePEM(s string) (block *pem.Block, problem string) {
	s = normalizePEM(s)
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return b, ""
	}
	begin := strings.Index(s, "-----BEGIN ")
	if begin < 0 {
		return nil, "not a PEM block (want -----BEGIN ...----- and -----END ...----- lines)"
	}
	rest := s[begin+len("-----BEGIN "):]
	label, body, ok := strings.Cut(rest, "-----")
	if !ok || len(label) > 64 {
		return nil, "not a PEM block: malformed BEGIN line"
	}
	body, _, ok = strings.Cut(body, "-----END "+label+"-----")
	if !ok {
		return nil, "PEM block has no matching END line (was the value cut short?)"
	}
	if strings.Contains(body, ":") {
		return nil, "PEM block has headers (an encrypted key?); export the key without a passphrase"
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, "PEM block body is not valid base64 (was the value edited?)"
	}
	return &pem.Block{Type: label, Bytes: der}, ""
}

// parsePrivateKey accepts PKCS#1 ("RSA PRIVATE KEY") and PKCS#8 ("PRIVATE
// KEY") RSA keys, whichever label the block carries.
func parsePrivateKey(s string) (*rsa.PrivateKey, string) {
	block, problem := decodePEM(s)
	if problem != "" {
		return nil, problem
	}
	if block.Headers["Proc-Type"] != "" || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, "encrypted private keys are not supported; export the key without a passphrase"
	}
	switch block.Type {
	case "RSA PRIVATE KEY", "PRIVATE KEY":
	case "CERTIFICATE":
		return nil, "holds a certificate, not a private key (are privateKey and publicKey swapped?)"
	case "EC PRIVATE KEY":
		return nil, "holds an EC key; IMS needs an RSA private key"
	default:
		return nil, fmt.Sprintf("PEM block is %q; want RSA PRIVATE KEY (PKCS#1) or PRIVATE KEY (PKCS#8)", truncate(block.Type, 40))
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, ""
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// The x509 message is not quoted: it is generic anyway, and this keeps
		// any parser detail about the key bytes out of logs.
		return nil, "not a valid PKCS#1 or PKCS#8 RSA private key"
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, ""
	case *ecdsa.PrivateKey:
		return nil, "holds an ECDSA key; IMS needs an RSA private key"
	case ed25519.PrivateKey:
		return nil, "holds an Ed25519 key; IMS needs an RSA private key"
	default:
		return nil, "holds a non-RSA key; IMS needs an RSA private key"
	}
}

func parseCertificate(s string) (*x509.Certificate, string) {
	block, problem := decodePEM(s)
	if problem != "" {
		return nil, problem
	}
	switch block.Type {
	case "CERTIFICATE":
	case "RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY":
		return nil, "holds a private key, not a certificate (are privateKey and publicKey swapped?)"
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		return nil, "holds a bare public key; want the CERTIFICATE from the service credentials download"
	default:
		return nil, fmt.Sprintf("PEM block is %q; want CERTIFICATE", truncate(block.Type, 40))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, "not a valid X.509 certificate"
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return nil, "certificate does not hold an RSA public key"
	}
	return cert, ""
}

// CertificateNotAfter returns when the certificate IMS verifies the JWT with
// expires, or the zero time if the credentials carry no certificate. After
// that, exchanges fail until new credentials are downloaded.
func (c *ServiceCredentials) CertificateNotAfter() time.Time {
	if c == nil || c.Certificate == nil {
		return time.Time{}
	}
	return c.Certificate.NotAfter
}

// validate checks credentials built in code rather than parsed, naming Go
// fields. It never mentions secret values.
func (c *ServiceCredentials) validate() error {
	if c == nil {
		return errors.New("no service credentials")
	}
	var problems []error
	need := func(field, v string) {
		if strings.TrimSpace(v) == "" {
			problems = append(problems, &FieldError{Field: field, Problem: "empty"})
		}
	}
	need("ClientID", c.ClientID)
	need("ClientSecret", c.ClientSecret.Reveal())
	need("Org", c.Org)
	need("TechnicalAccountID", c.TechnicalAccountID)
	if _, err := normalizeIMSEndpoint(c.IMSEndpoint); err != nil {
		problems = append(problems, &FieldError{Field: "IMSEndpoint", Problem: err.Error()})
	}
	if _, err := cleanMetascopes(c.Metascopes); err != nil {
		problems = append(problems, &FieldError{Field: "Metascopes", Problem: err.Error()})
	}
	if c.PrivateKey == nil {
		problems = append(problems, &FieldError{Field: "PrivateKey", Problem: "missing"})
	}
	return errors.Join(problems...)
}

// String describes c without its client secret or private key.
func (c ServiceCredentials) String() string {
	var b strings.Builder
	b.WriteString("ims.ServiceCredentials{client_id=")
	b.WriteString(strconv.Quote(c.ClientID))
	b.WriteString(" org=")
	b.WriteString(strconv.Quote(c.Org))
	b.WriteString(" ims=")
	b.WriteString(strconv.Quote(c.IMSEndpoint))
	b.WriteString(" metascopes=")
	b.WriteString(strconv.Quote(strings.Join(c.Metascopes, ",")))
	b.WriteString(" client_secret=" + redacted + " private_key=" + redacted)
	if c.Certificate != nil {
		b.WriteString(" certificate_not_after=")
		b.WriteString(c.Certificate.NotAfter.UTC().Format(time.RFC3339))
	}
	b.WriteString("}")
	return b.String()
}

// GoString keeps %#v from printing the secret and the private key.
func (c ServiceCredentials) GoString() string { return c.String() }

// MarshalJSON renders the non-secret fields only.
func (c ServiceCredentials) MarshalJSON() ([]byte, error) {
	v := struct {
		IMSEndpoint         string    `json:"ims_endpoint"`
		ClientID            string    `json:"client_id"`
		ClientSecret        Secret    `json:"client_secret"`
		Org                 string    `json:"org"`
		TechnicalAccountID  string    `json:"technical_account_id"`
		Metascopes          []string  `json:"metascopes"`
		PrivateKey          string    `json:"private_key"`
		CertificateNotAfter time.Time `json:"certificate_not_after,omitzero"`
	}{c.IMSEndpoint, c.ClientID, c.ClientSecret, c.Org, c.TechnicalAccountID, c.Metascopes, redacted, c.CertificateNotAfter()}
	return json.Marshal(v)
}

// MarshalZerologObject logs the non-secret fields only.
func (c ServiceCredentials) MarshalZerologObject(e *zerolog.Event) {
	e.Str("client_id", c.ClientID).Str("org", c.Org).Str("ims_endpoint", c.IMSEndpoint).
		Strs("metascopes", c.Metascopes)
	if c.Certificate != nil {
		e.Time("certificate_not_after", c.Certificate.NotAfter)
	}
}

// truncate shortens s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
