package cluster

import "testing"

// A client's id names the subject its answers go to: a host drops a task
// whose id could not be one token of a subject, rather than retry sending
// its answer to a subject the connection refuses at once.
func TestSubjectToken(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"QvH3kY1o9zB2tW8JrLm4Xa", true}, // a NUID
		{"client-1_é", true},
		{"", false},
		{"a.b", false},
		{"a*", false},
		{">", false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
	} {
		if got := subjectToken(c.s); got != c.want {
			t.Errorf("subjectToken(%q) = %v, want %v", c.s, got, c.want)
		}
	}
}
