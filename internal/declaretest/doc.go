// Package declaretest holds the tests of procpool.Declare. They need a test
// binary of their own: the functions they declare would otherwise be
// required of every WithCommand pool of the root package's tests.
package declaretest
