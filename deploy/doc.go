// Package deploy holds no code. It is the home of the deployment examples
// (the Kubernetes manifests in kubernetes/, the systemd unit in systemd/) and
// of the tests that keep them, the repository's Dockerfile and the docs in
// step with the program: no container engine or cluster is needed to run
// them, only Go.
package deploy
