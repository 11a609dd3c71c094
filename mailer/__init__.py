"""Newsletter composer and mailing service: issue file -> composed mail -> dispatcher -> delivery log -> report."""
