package main

import (
	"fmt"
	"testing"
)

func TestPrefixes(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"127.0.0.0/8", "::1/128"}, "[127.0.0.0/8 ::1/128]"},
		{[]string{""}, "[]"}, // --conn-rate-exempt "": nobody exempt
		{[]string{" 192.0.2.7 ", "2001:db8::1"}, "[192.0.2.7/32 2001:db8::1/128]"},
		{[]string{"10.1.2.3/8"}, "[10.0.0.0/8]"},
	} {
		got, err := prefixes(c.in)
		if err != nil || got == nil || fmt.Sprint(got) != c.want {
			t.Errorf("prefixes(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
	if _, err := prefixes([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad prefix was accepted")
	}
	if _, err := prefixes([]string{"mx.example"}); err == nil {
		t.Error("a host name was accepted")
	}
}
