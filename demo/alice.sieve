# alice's Sieve script for make demo: she is away, and says so once a week per sender.
# Mail not addressed to her, list mail and automatic mail get no reply (RFC 3834).
require ["vacation"];

vacation :days 7
  "I am away until Monday and will answer your message then.

Alice";
