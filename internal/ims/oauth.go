package ims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// DefaultIMSEndpoint is the IMS host of OAuth credentials that name none:
// the Developer Console's workspace download does not carry one.
const DefaultIMSEndpoint = "ims-na1.adobelogin.com"

// integrationTypeOAuth is the integration_type of an OAuth server-to-server
// credential in a Developer Console workspace download (spec §1).
const integrationTypeOAuth = "oauth_server_to_server"

// OAuthCredentials are an Adobe Developer Console OAuth server-to-server
// credential (spec §1, §4). String, GoString, MarshalJSON and
// MarshalZerologObject never reveal ClientSecret.
type OAuthCredentials struct {
	// IMSEndpoint is the IMS host name; DefaultIMSEndpoint unless the file
	// names another.
	IMSEndpoint string
	// ClientID is also the X-Api-Key AEM's OpenAPI-based APIs want.
	ClientID     string
	ClientSecret Secret
	// Scopes are sent to IMS comma-separated.
	Scopes []string
	// Org is the IMS organization, if the file says; informational.
	Org string
	// Name is the credential's name in a workspace download; "" otherwise.
	Name string
}

// ParseOAuthCredentials reads OAuth server-to-server credentials in either
// of two forms:
//
//   - the Developer Console workspace download: the credential with
//     integration_type "oauth_server_to_server" in
//     project.workspace.details.credentials (the one called name, if name is
//     not empty; name is required when there are several), its client_id,
//     first client_secrets entry and scopes, and project.org.ims_org_id;
//   - a plain object {"client_id", "client_secret", "scopes": [...] or
//     "a,b", optional "ims_endpoint" and "org"}; name is ignored.
//
// On failure the error joins one *FieldError per problem found; no message
// contains the client secret. When a credential cannot be chosen, the error
// lists the names there are to choose from.
func ParseOAuthCredentials(data []byte, name string) (*OAuthCredentials, error) {
	top, err := jsonObject(data)
	if err != nil {
		return nil, err
	}
	p := &credentialsParser{}
	var c *OAuthCredentials
	if raw, ok := top["project"]; ok {
		c = p.parseWorkspace(raw, strings.TrimSpace(name))
	} else {
		c = p.parsePlainOAuth(top)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// jsonObject decodes a file that must hold one JSON object.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, describeJSONError(data, err)
	}
	if top == nil {
		return nil, &FieldError{Problem: "not a JSON object"}
	}
	return top, nil
}

// object decodes the JSON object at field, reporting a problem if it is
// missing or not an object.
func (p *credentialsParser) object(raw json.RawMessage, present bool, field string) (map[string]json.RawMessage, bool) {
	if !present || isNull(raw) {
		p.add(field, "missing")
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		p.add(field, "not a JSON object")
		return nil, false
	}
	return m, true
}

// workspaceCredential is one entry of project.workspace.details.credentials.
type workspaceCredential struct {
	index int
	name  string
	id    string
	typ   string
	body  map[string]json.RawMessage
}

func (p *credentialsParser) parseWorkspace(raw json.RawMessage, name string) *OAuthCredentials {
	const credsField = "project.workspace.details.credentials"
	project, ok := p.object(raw, true, "project")
	if !ok {
		return nil
	}
	org := ""
	if rawOrg, ok := project["org"]; ok && !isNull(rawOrg) {
		if o, ok := p.object(rawOrg, true, "project.org"); ok {
			org, _ = p.str(o, "project.org.", "ims_org_id", false)
		}
	}
	all, ok := p.workspaceCredentials(project)
	if !ok {
		return nil
	}
	var oauth []workspaceCredential
	for _, wc := range all {
		if wc.typ == integrationTypeOAuth {
			oauth = append(oauth, wc)
		}
	}
	var chosen []workspaceCredential
	if name == "" {
		chosen = oauth
	} else {
		for _, wc := range oauth {
			if wc.name == name || (wc.id != "" && wc.id == name) {
				chosen = append(chosen, wc)
			}
		}
	}
	switch {
	case len(oauth) == 0:
		p.add(credsField, "no credential with integration_type "+integrationTypeOAuth+" (the workspace has: "+describeCredentials(all, true)+"); add an OAuth server-to-server credential to the project in the Adobe Developer Console")
		return nil
	case len(chosen) == 0:
		p.add(credsField, "no "+integrationTypeOAuth+" credential named "+strconv.Quote(truncate(name, 100))+"; the workspace has: "+describeCredentials(oauth, false))
		return nil
	case len(chosen) > 1 && name == "":
		p.add(credsField, "several "+integrationTypeOAuth+" credentials ("+describeCredentials(oauth, false)+"); choose one by its name")
		return nil
	case len(chosen) > 1:
		p.add(credsField, "several "+integrationTypeOAuth+" credentials are named "+strconv.Quote(truncate(name, 100))+"; choose one by its id instead: "+describeIDs(chosen))
		return nil
	}
	wc := chosen[0]
	field := credsField + "[" + strconv.Itoa(wc.index) + "]." + integrationTypeOAuth
	body, ok := p.object(wc.body[integrationTypeOAuth], hasKey(wc.body, integrationTypeOAuth), field)
	if !ok {
		return nil
	}
	c := &OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, Org: org, Name: wc.name}
	c.ClientID, _ = p.str(body, field+".", "client_id", true)
	c.ClientSecret = p.firstSecret(body, field+".client_secrets")
	c.Scopes = p.scopes(body, field+".", "scopes")
	return c
}

// workspaceCredentials reads project.workspace.details.credentials.
func (p *credentialsParser) workspaceCredentials(project map[string]json.RawMessage) ([]workspaceCredential, bool) {
	ws, ok := p.object(project["workspace"], hasKey(project, "workspace"), "project.workspace")
	if !ok {
		return nil, false
	}
	details, ok := p.object(ws["details"], hasKey(ws, "details"), "project.workspace.details")
	if !ok {
		return nil, false
	}
	const field = "project.workspace.details.credentials"
	raw, present := details["credentials"]
	if !present || isNull(raw) {
		p.add(field, "missing")
		return nil, false
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		p.add(field, "not a JSON array")
		return nil, false
	}
	before := len(p.problems)
	out := make([]workspaceCredential, 0, len(list))
	for i, item := range list {
		var body map[string]json.RawMessage
		if json.Unmarshal(item, &body) != nil || body == nil {
			p.add(field+"["+strconv.Itoa(i)+"]", "not a JSON object")
			continue
		}
		wc := workspaceCredential{index: i, body: body}
		wc.name = jsonString(body["name"])
		wc.id = jsonString(body["id"])
		wc.typ = jsonString(body["integration_type"])
		out = append(out, wc)
	}
	return out, len(p.problems) == before
}

func hasKey(m map[string]json.RawMessage, k string) bool {
	_, ok := m[k]
	return ok
}

// jsonString returns raw as a trimmed string, or "" if it is not one.
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return strings.TrimSpace(s)
}

// describeCredentials lists credential names (and types) for an error.
// Names and types are not secret; nothing else of the file is printed.
func describeCredentials(list []workspaceCredential, withType bool) string {
	if len(list) == 0 {
		return "none"
	}
	const most = 20
	parts := make([]string, 0, min(len(list), most)+1)
	for i, wc := range list {
		if i == most {
			parts = append(parts, "and "+strconv.Itoa(len(list)-most)+" more")
			break
		}
		s := strconv.Quote(truncate(wc.name, 100))
		if withType {
			typ := wc.typ
			if typ == "" {
				typ = "no integration_type"
			}
			s += " (" + strconv.Quote(truncate(typ, 40)) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func describeIDs(list []workspaceCredential) string {
	ids := make([]string, 0, len(list))
	for _, wc := range list {
		ids = append(ids, strconv.Quote(truncate(wc.id, 100)))
	}
	return strings.Join(ids, ", ")
}

// firstSecret reads the first non-empty entry of the client_secrets array.
func (p *credentialsParser) firstSecret(obj map[string]json.RawMessage, field string) Secret {
	raw, present := obj["client_secrets"]
	if !present || isNull(raw) {
		p.add(field, "missing")
		return ""
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		p.add(field, "not a JSON array of strings")
		return ""
	}
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			return Secret(s)
		}
	}
	p.add(field, "empty")
	return ""
}

func (p *credentialsParser) parsePlainOAuth(top map[string]json.RawMessage) *OAuthCredentials {
	c := &OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint}
	c.ClientID, _ = p.str(top, "", "client_id", true)
	secret, _ := p.str(top, "", "client_secret", true)
	c.ClientSecret = Secret(secret)
	c.Scopes = p.scopes(top, "", "scopes")
	if v, ok := p.str(top, "", "ims_endpoint", false); ok && v != "" {
		host, err := normalizeIMSEndpoint(v)
		if err != nil {
			p.add("ims_endpoint", err.Error())
		}
		c.IMSEndpoint = host
	}
	c.Org, _ = p.str(top, "", "org", false)
	return c
}

// scopes reads a JSON array of strings or a comma-separated string.
func (p *credentialsParser) scopes(obj map[string]json.RawMessage, prefix, key string) []string {
	return p.scopeList(obj[key], prefix+key, "not a JSON array of strings or a comma-separated string", cleanScopes)
}

// cleanScopes trims entries and drops empty ones and duplicates. A scope is
// an RFC 6749 scope token; a comma would split it on the wire.
func cleanScopes(entries []string) ([]string, error) {
	var out []string
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || seen[e] {
			continue
		}
		if strings.ContainsFunc(e, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ',' || r == '"' || r == '\\' }) {
			return nil, fmt.Errorf("entry %q contains a space, comma, quote or control character", truncate(e, 64))
		}
		seen[e] = true
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

// validate checks credentials built in code rather than parsed, naming Go
// fields. It never mentions the secret.
func (c *OAuthCredentials) validate() error {
	if c == nil {
		return errors.New("no OAuth credentials")
	}
	var problems []error
	if strings.TrimSpace(c.ClientID) == "" {
		problems = append(problems, &FieldError{Field: "ClientID", Problem: "empty"})
	}
	if strings.TrimSpace(c.ClientSecret.Reveal()) == "" {
		problems = append(problems, &FieldError{Field: "ClientSecret", Problem: "empty"})
	}
	if _, err := normalizeIMSEndpoint(c.IMSEndpoint); err != nil {
		problems = append(problems, &FieldError{Field: "IMSEndpoint", Problem: err.Error()})
	}
	if _, err := cleanScopes(c.Scopes); err != nil {
		problems = append(problems, &FieldError{Field: "Scopes", Problem: err.Error()})
	}
	return errors.Join(problems...)
}

// String describes c without its client secret.
func (c OAuthCredentials) String() string {
	var b strings.Builder
	b.WriteString("ims.OAuthCredentials{client_id=")
	b.WriteString(strconv.Quote(c.ClientID))
	if c.Name != "" {
		b.WriteString(" name=")
		b.WriteString(strconv.Quote(c.Name))
	}
	b.WriteString(" org=")
	b.WriteString(strconv.Quote(c.Org))
	b.WriteString(" ims=")
	b.WriteString(strconv.Quote(c.IMSEndpoint))
	b.WriteString(" scopes=")
	b.WriteString(strconv.Quote(strings.Join(c.Scopes, ",")))
	b.WriteString(" client_secret=" + redacted + "}")
	return b.String()
}

// GoString keeps %#v from printing the secret.
func (c OAuthCredentials) GoString() string { return c.String() }

// MarshalJSON renders the non-secret fields only.
func (c OAuthCredentials) MarshalJSON() ([]byte, error) {
	v := struct {
		IMSEndpoint  string   `json:"ims_endpoint"`
		ClientID     string   `json:"client_id"`
		ClientSecret Secret   `json:"client_secret"`
		Scopes       []string `json:"scopes"`
		Org          string   `json:"org,omitempty"`
		Name         string   `json:"name,omitempty"`
	}{c.IMSEndpoint, c.ClientID, c.ClientSecret, c.Scopes, c.Org, c.Name}
	return json.Marshal(v)
}

// MarshalZerologObject logs the non-secret fields only.
func (c OAuthCredentials) MarshalZerologObject(e *zerolog.Event) {
	e.Str("client_id", c.ClientID).Str("ims_endpoint", c.IMSEndpoint).Strs("scopes", c.Scopes)
	if c.Name != "" {
		e.Str("credential_name", c.Name)
	}
	if c.Org != "" {
		e.Str("org", c.Org)
	}
}

// ClientCredentialsExchange is a TokenSource that asks IMS for a token with
// the OAuth client-credentials grant (POST /ims/token/v3, spec §4) on every
// Token call; wrap it in a Cache. It is safe for concurrent use.
type ClientCredentialsExchange struct {
	creds    OAuthCredentials
	scope    string
	endpoint string
	client   *http.Client
	now      func() time.Time
}

// NewClientCredentialsExchange checks c and o and returns an exchange.
// o.JWTLifetime does not apply and is ignored.
func NewClientCredentialsExchange(c *OAuthCredentials, o ExchangeOptions) (*ClientCredentialsExchange, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("new OAuth client-credentials exchange: OAuth credentials: %w", err)
	}
	x := &ClientCredentialsExchange{creds: *c, now: o.Now}
	x.creds.IMSEndpoint, _ = normalizeIMSEndpoint(c.IMSEndpoint)
	x.creds.Scopes, _ = cleanScopes(c.Scopes)
	x.scope = strings.Join(x.creds.Scopes, ",")
	if x.now == nil {
		x.now = time.Now
	}
	var err error
	x.endpoint, x.client, err = exchangeEndpoint(x.creds.IMSEndpoint, o, "ims", "token", "v3")
	if err != nil {
		return nil, fmt.Errorf("new OAuth client-credentials exchange: %w", err)
	}
	return x, nil
}

// Token asks IMS for an access token. expires_in is in seconds at this
// endpoint, but the token's own created_at and expires_in take precedence
// when it carries them (spec §4). An IMS refusal is an *Error; see
// IsPermanent.
func (x *ClientCredentialsExchange) Token(ctx context.Context) (Token, error) {
	secret := x.creds.ClientSecret.Reveal()
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {x.creds.ClientID},
		"client_secret": {secret},
		"scope":         {x.scope},
	}
	return requestToken(ctx, tokenRequest{
		client:            x.client,
		endpoint:          x.endpoint,
		form:              form,
		unit:              time.Second, // spec §4: seconds at this endpoint
		now:               x.now,
		secrets:           []string{secret},
		clientCredentials: true,
	})
}

// ClientID returns the credential's client id, which AEM's OpenAPI-based
// APIs want as X-Api-Key (spec §4).
func (x *ClientCredentialsExchange) ClientID() string { return x.creds.ClientID }
