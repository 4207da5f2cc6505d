package ims

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Kind is a kind of credential a route authenticates to AEM with.
type Kind string

const (
	// KindServiceCredentials: AEM Developer Console service credentials,
	// exchanged for tokens with a signed JWT (spec §1, §3).
	KindServiceCredentials Kind = "service_credentials"
	// KindOAuth: an Adobe Developer Console OAuth server-to-server
	// credential, exchanged with the client-credentials grant (spec §4).
	KindOAuth Kind = "oauth_server_to_server"
	// KindDevToken: a local development token, used as is until it expires.
	KindDevToken Kind = "dev_token"
	// KindBasic: HTTP Basic for a local AEM SDK.
	KindBasic Kind = "basic"
)

// kinds are all kinds, in the order DetectKind prefers them.
var kinds = [...]Kind{KindServiceCredentials, KindDevToken, KindOAuth, KindBasic}

// kindHelp describes what a file of each kind looks like.
const kindHelp = `service_credentials (AEM Developer Console service credentials: {"integration": {"technicalAccount": ..., "privateKey": ...}}); ` +
	`oauth_server_to_server (Adobe Developer Console workspace JSON with an OAuth server-to-server credential, or {"client_id": ..., "client_secret": ..., "scopes": [...]}); ` +
	`dev_token (AEM Developer Console local development token {"accessToken": ...}, or a file holding just the token); ` +
	`basic (local AEM SDK login {"username": ..., "password": ...})`

// ErrUnknownKind marks a credentials file that is none of the kinds
// aemproxy knows.
var ErrUnknownKind = errors.New("not a kind of credentials aemproxy knows")

// ParseKind checks a kind named in configuration; "" means auto-detect and
// is returned as is.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.TrimSpace(s))
	if k == "" {
		return "", nil
	}
	for _, known := range kinds {
		if k == known {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown credentials kind %q: want %s, %s, %s or %s", truncate(string(k), 40), KindServiceCredentials, KindOAuth, KindDevToken, KindBasic)
}

// DetectKind tells the kind of a credentials file by its content:
//
//   - service_credentials: an "integration" object (or technicalAccount and
//     privateKey at the top level);
//   - dev_token: an "accessToken" field, or the whole file is one token;
//   - oauth_server_to_server: a Developer Console project file with an
//     oauth_server_to_server credential, or client_id and client_secret
//     without a privateKey;
//   - basic: username and password.
//
// It checks only the shape, not that the file is complete; parse it for
// that. A file of none of these kinds gives an error wrapping ErrUnknownKind
// that describes each kind. No error contains file content.
func DetectKind(data []byte) (Kind, error) {
	m, err := inspect(data)
	if err != nil {
		return "", err
	}
	if k := m.kind(); k != "" {
		return k, nil
	}
	return "", m.unknown()
}

// shape is what inspect learned about a credentials file: which fields are
// there, never their values.
type shape struct {
	object bool
	// bareToken: the whole file is one token (maybe a JSON string).
	bareToken                                  bool
	integration, technicalAccount, privateKey  bool
	accessToken                                bool
	project                                    bool
	projectOAuth                               int
	clientID, clientSecret, username, password bool
}

// inspect reads the shape of a credentials file. It fails only for a file
// that is empty or not valid JSON although it starts like JSON.
func inspect(data []byte) (shape, error) {
	data = trimFile(data)
	var s shape
	switch {
	case len(data) == 0:
		return s, &FieldError{Problem: "empty file"}
	case data[0] == '{':
		top, err := jsonObject(data)
		if err != nil {
			return s, err
		}
		s.object = true
		s.integration = hasKey(top, "integration")
		s.technicalAccount = hasKey(top, "technicalAccount")
		s.privateKey = hasKey(top, "privateKey")
		s.accessToken = hasKey(top, "accessToken")
		s.clientID = hasKey(top, "client_id")
		s.clientSecret = hasKey(top, "client_secret")
		s.username = hasKey(top, "username")
		s.password = hasKey(top, "password")
		if raw, ok := top["project"]; ok {
			s.project = true
			p := &credentialsParser{}
			if project, ok := p.object(raw, true, "project"); ok {
				all, _ := p.workspaceCredentials(project)
				for _, wc := range all {
					if wc.typ == integrationTypeOAuth {
						s.projectOAuth++
					}
				}
			}
		}
	case data[0] == '[':
		if !json.Valid(data) {
			return s, describeJSONError(data, json.Unmarshal(data, new(any)))
		}
	default:
		_, err := ParseDevToken(data)
		s.bareToken = err == nil
	}
	return s, nil
}

// kind returns the detected kind, or "".
func (s shape) kind() Kind {
	for _, k := range kinds {
		if s.is(k) {
			return k
		}
	}
	return ""
}

// is reports whether the file has the shape of kind k.
func (s shape) is(k Kind) bool {
	switch k {
	case KindServiceCredentials:
		return s.integration || (s.technicalAccount && s.privateKey)
	case KindDevToken:
		return s.accessToken || s.bareToken
	case KindOAuth:
		return s.projectOAuth > 0 || (s.clientID && s.clientSecret && !s.privateKey)
	case KindBasic:
		return s.username && s.password
	}
	return false
}

// lacks returns what a file stated to be of kind k misses to be one, or ""
// if it has the mark of k (it may still be incomplete: the parser says).
func (s shape) lacks(k Kind) string {
	switch k {
	case KindServiceCredentials:
		if s.integration || s.technicalAccount {
			return ""
		}
		return "no integration object"
	case KindDevToken:
		if s.is(KindDevToken) {
			return ""
		}
		if s.object {
			return "no accessToken"
		}
		return "no accessToken, and it is not a file holding just a token"
	case KindOAuth:
		switch {
		case s.project && s.projectOAuth == 0:
			return "no credential with integration_type " + integrationTypeOAuth + " in its project"
		case s.project || s.clientID:
			return ""
		}
		return "no client_id"
	case KindBasic:
		if s.username || s.password {
			return ""
		}
		return "no username and password"
	}
	return "an unknown kind"
}

// unknown explains why a file is of no known kind, without its content.
func (s shape) unknown() error {
	if s.project {
		return fmt.Errorf("%w: an Adobe Developer Console project file, but it has no credential with integration_type %s; add an OAuth server-to-server credential to the project and download it again",
			ErrUnknownKind, integrationTypeOAuth)
	}
	return fmt.Errorf("%w; want one of: %s", ErrUnknownKind, kindHelp)
}
