package svc

func newManager() (Manager, error) { return NewSystemd(), nil }
