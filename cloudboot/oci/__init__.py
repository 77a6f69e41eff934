"""OCI registry client for cloudboot (DESIGN §5 "OCI media types").

Pull side (guest, standard library only): ref (references), mediatypes (roles and both
spellings), manifest (manifests, indexes, platform match), client (HTTP with auth, retries,
digest-checked blob streaming). Push side (host only, imported lazily): push.
"""

from cloudboot.oci.client import OCIError, Registry
from cloudboot.oci.manifest import Descriptor, Manifest, Platform
from cloudboot.oci.ref import Reference, RefError, parse_ref

__all__ = ["Descriptor", "Manifest", "OCIError", "Platform", "RefError", "Reference",
           "Registry", "parse_ref"]
