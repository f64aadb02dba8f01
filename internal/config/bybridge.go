package config

// NetworkOnBridge returns the name of the network whose bridge is br: one the
// file defines, or the built-in default on br0 when the file does not define
// it. ok is false when br is no network's: a bridge kvmnet must leave alone.
func (f *File) NetworkOnBridge(br string) (name string, ok bool) {
	for _, name := range f.names() {
		n := f.Networks[name]
		n.Name = name
		if n.bridge() == br {
			return name, true
		}
	}
	if _, defined := f.Networks[DefaultNetwork]; !defined && br == DefaultBridge {
		return DefaultNetwork, true
	}
	return "", false
}
