//go:build !race

package procpool_test

// raceDetector is true when the tests run with -race: the workers, which
// re-run the test binary, then carry the race detector's runtime too.
const raceDetector = false
