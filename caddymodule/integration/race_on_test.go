//go:build race

package integration

// raceEnabled: the race detector multiplies memory use, so memory bounds
// are reported but not enforced under it.
const raceEnabled = true
