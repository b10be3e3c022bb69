"""SOS, the Service Operator Service: deploy your own services as immutable revisions."""
