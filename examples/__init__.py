"""Reference apps: a tiny product that uses pbidentity for SCIM provisioning and SAML sign-in."""
