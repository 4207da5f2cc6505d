// Package proxy answers "how does a request reach AEM": it is the
// authenticating reverse proxy in front of AEM as a Cloud Service. A
// [Handler] takes plain HTTP from internal clients, picks a [Route], puts the
// route's IMS access token in Authorization and streams the request to the
// route's upstream with [httputil.ReverseProxy], then streams the answer back.
//
// # Routing
//
// One Handler serves one listener. A route matches a request when its Hosts
// list is empty or names the request's host (case-insensitive; an entry
// without a port matches any port, an entry with a port only that port), and
// its PathPrefix matches the path on segment boundaries ("/content" matches
// "/content" and "/content/dam", not "/contentx"). Among the routes that
// match, one with Hosts beats one without, then the longest PathPrefix wins,
// then the earlier route in Options.Routes.
//
// # Paths
//
// Routing sees the decoded path, so "%2e%2e" and "%2F" are what they decode
// to. A path must already be clean: it starts with "/" and has no empty
// segment ("//") and no "." or ".." segment, a trailing slash being allowed.
// Because servlet containers read "..;x" as ".." and some servers split on
// "\", a segment that is "." or ".." before a ";" or between backslashes
// counts too. Anything else is refused with 400 rather than cleaned: a
// cleaned path would name a different resource than the client asked for,
// and refusing keeps the rule simple and leaves nothing to escape a prefix.
// A clean path is forwarded in its original escaping (minus the prefix when
// StripPrefix is set), so "/content/a%2Fb" reaches AEM as sent.
//
// # Guards and limits
//
// A route may carry a [guard.Guard] (client networks, API keys, a required
// header, a method and path policy), which is asked about each request after
// routing and before a token is fetched, with the decoded path AEM will
// receive (after StripPrefix). A route may also bound its request bodies
// (MaxBodyBytes: 413) and the requests it serves at once (MaxConcurrent: 503
// with Retry-After, never queued). Every refusal is answered with the same
// short JSON error and counted in aemproxy_rejected_requests_total by
// reason, and never reaches AEM.
//
// # What a client cannot do
//
// The proxy is not an open proxy: CONNECT, absolute-form targets naming a
// host that is not one of the proxy's own (a route's Hosts, a route's
// ExternalURL host, or the address the connection arrived on), and targets
// that are not a path (OPTIONS *) are refused and never reach an upstream.
// Clients cannot choose the credential: inbound Authorization,
// Proxy-Authorization, Forwarded and X-Forwarded-* are dropped, Cookie too
// unless the route passes cookies, and hop-by-hop headers never pass either
// way. The token goes only to the route's upstream: redirects are never
// followed, and a Location on another origin (signed blob storage URLs)
// passes to the client untouched.
package proxy
