//go:build !linux && !windows

package svc

func newManager() (Manager, error) { return nil, ErrUnsupported }
