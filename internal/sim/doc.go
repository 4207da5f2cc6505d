// Package sim simulates the Adobe services aemproxy talks to, for tests
// across the repository and for the demo command: an IMS issuing access
// tokens (IMS), an AEM as a Cloud Service origin (AEM), and generated service
// credentials (Credentials). The simulations follow
// shared/IMS-AEM-PROTOCOL.md, check what the real services check, and never
// echo a secret in a response or a log line.
//
// Typical test wiring:
//
//	creds, _ := sim.NewCredentials(sim.CredentialOptions{})
//	ims, _ := sim.NewIMS(sim.IMSOptions{})
//	ims.Register(creds)
//	srv := httptest.NewServer(ims)
//	aem := sim.NewAEM(ims.ValidateAccessToken)
package sim
