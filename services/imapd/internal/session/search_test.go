package session

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// nested returns depth NOTs around cr.
func nested(depth int, cr imap.SearchCriteria) *imap.SearchCriteria {
	for range depth {
		cr = imap.SearchCriteria{Not: []imap.SearchCriteria{cr}}
	}
	return &cr
}

func TestSearchKeys(t *testing.T) {
	seen := imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}
	or := func(a, b imap.SearchCriteria) imap.SearchCriteria {
		return imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{a, b}}}
	}
	orChain := seen
	for range 499 {
		orChain = or(seen, orChain)
	}
	cases := []struct {
		name string
		in   *imap.SearchCriteria
		want int // up to the limit: more than maxSearchKeys is "over"
	}{
		{"ALL", &imap.SearchCriteria{}, 1},
		{"SEEN", &seen, 2},
		{"OR SEEN SEEN", &[]imap.SearchCriteria{or(seen, seen)}[0], 5},
		{"NOT SEEN", nested(1, seen), 3},
		{"997 NOT SEEN", nested(997, seen), 999},
		{"998 NOT SEEN", nested(998, seen), 1000},
		{"999 NOT SEEN", nested(999, seen), 1001},
		{"12000 NOT", nested(12000, seen), maxSearchKeys + 1},
		{"499 OR", &orChain, 499*3 + 2},
		{"7000 flags", &imap.SearchCriteria{Flag: make([]imap.Flag, 7000)}, 7001},
		{"TEXT", &imap.SearchCriteria{Text: []string{"x"}}, 11},
		{"99 HEADER", &imap.SearchCriteria{Header: make([]imap.SearchCriteriaHeaderField, 99)}, 991},
		{"100 BODY", &imap.SearchCriteria{Body: make([]string, 100)}, 1001},
	}
	for _, c := range cases {
		got := searchKeys(c.in, maxSearchKeys)
		if c.want > maxSearchKeys {
			if got <= maxSearchKeys {
				t.Errorf("searchKeys(%s) = %d, want over %d", c.name, got, maxSearchKeys)
			}
			continue
		}
		if got != c.want {
			t.Errorf("searchKeys(%s) = %d, want %d", c.name, got, c.want)
		}
	}
}
