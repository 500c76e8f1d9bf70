"""Getting events in and out of files and topics: replay readers, producing, the sample and
generated populations, and evaluation against ground truth."""
