# bob's Sieve script for make demo: list mail filed by List-Id, +detail folders,
# a flag and a keyword on invoices, and one sender refused (the rejection is mailed).
require ["fileinto", "envelope", "subaddress", "variables", "imap4flags", "mailbox",
         "reject"];

# Mailing lists: into Lists/<name>, from List-Id: Name <name.lists.example.com>.
if header :matches "List-Id" "*<*.*>*" {
    fileinto :create "Lists/${2}";
    stop;
}

# This sender is refused: the rejection is mailed back to it (an MDN, as Dovecot
# sends it).
if address :is "from" "offers@spam.example" {
    reject "This address does not accept offers.";
    stop;
}

# Invoices are flagged and get the keyword $Invoice, wherever they are filed
# (Maildir: a letter named in the folder's dovecot-keywords, as Dovecot keeps it).
if header :contains "Subject" "invoice" {
    addflag ["\\Flagged", "$Invoice"];
}

# bob+detail@example.org: into the folder named after the detail, in lower case.
if envelope :matches :detail "to" "*" {
    set :lower "folder" "${1}";
    fileinto :create "${folder}";
}
