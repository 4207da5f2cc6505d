package ims

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode"

	"github.com/rs/zerolog"
)

// BasicCredentials log in to a local AEM SDK with HTTP Basic (spec §1:
// admin:admin by default). String, GoString, MarshalJSON and
// MarshalZerologObject never reveal Password.
type BasicCredentials struct {
	Username string
	Password Secret
}

// ParseBasicCredentials reads {"username": "...", "password": "..."}. On
// failure the error joins one *FieldError per problem; none contains the
// password.
func ParseBasicCredentials(data []byte) (*BasicCredentials, error) {
	top, err := jsonObject(data)
	if err != nil {
		return nil, err
	}
	p := &credentialsParser{}
	c := &BasicCredentials{}
	c.Username, _ = p.str(top, "", "username", true)
	raw, present := top["password"]
	switch {
	case !present || isNull(raw):
		p.add("password", "missing")
	default:
		// The password is taken verbatim: spaces may be part of it.
		var pw string
		if json.Unmarshal(raw, &pw) != nil {
			p.add("password", "not a string")
		} else if pw == "" {
			p.add("password", "empty")
		}
		c.Password = Secret(pw)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	if err := c.validate("username", "password"); err != nil {
		return nil, err
	}
	return c, nil
}

// validate checks what HTTP Basic allows (RFC 7617): no colon in the user
// name, no control characters in either. Problems name the fields as given.
func (c *BasicCredentials) validate(userField, passwordField string) error {
	if c == nil {
		return errors.New("no basic credentials")
	}
	var problems []error
	switch {
	case strings.TrimSpace(c.Username) == "":
		problems = append(problems, &FieldError{Field: userField, Problem: "empty"})
	case strings.Contains(c.Username, ":"):
		problems = append(problems, &FieldError{Field: userField, Problem: "contains a colon, which HTTP Basic cannot carry in a user name"})
	case strings.ContainsFunc(c.Username, unicode.IsControl):
		problems = append(problems, &FieldError{Field: userField, Problem: "contains a control character"})
	}
	switch pw := c.Password.Reveal(); {
	case pw == "":
		problems = append(problems, &FieldError{Field: passwordField, Problem: "empty"})
	case strings.ContainsFunc(pw, unicode.IsControl):
		problems = append(problems, &FieldError{Field: passwordField, Problem: "contains a control character (a trailing newline?)"})
	}
	return errors.Join(problems...)
}

// String describes c without the password.
func (c BasicCredentials) String() string {
	return "ims.BasicCredentials{username=" + strconv.Quote(c.Username) + " password=" + redacted + "}"
}

// GoString keeps %#v from printing the password.
func (c BasicCredentials) GoString() string { return c.String() }

// MarshalJSON renders the user name only.
func (c BasicCredentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Username string `json:"username"`
		Password Secret `json:"password"`
	}{c.Username, c.Password})
}

// MarshalZerologObject logs the user name only.
func (c BasicCredentials) MarshalZerologObject(e *zerolog.Event) { e.Str("username", c.Username) }

// basicSource hands out one HTTP Basic credential as a Token with Scheme
// "Basic" that never expires.
type basicSource struct{ tok Token }

func newBasicSource(c *BasicCredentials) *basicSource {
	v := base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password.Reveal()))
	return &basicSource{tok: Token{AccessToken: v, ExpiresAt: farFuture, Scheme: "Basic"}}
}

func (s *basicSource) Token(context.Context) (Token, error) { return s.tok, nil }
