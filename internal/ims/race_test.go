//go:build race

package ims

const raceEnabled = true
