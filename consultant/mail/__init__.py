"""The pieces `consultant.parse` puts together to read a message.

* `limits`: every cap on work that grows with the input (size, depth, parts, characters);
* `text`: bytes and header values to text (charsets, RFC 2047 words, display lines);
* `addresses`: a strict parser for the From address;
* `body`: a body's own text, without quoted mail, forwarded headers, signatures or disclaimers;
* `subjects`: subject prefixes, subjects that say nothing, and what a subject says.

All pure: no I/O, no clock, no logging of content.
"""
