require ["regex", "fileinto", "variables"];
if header :regex "subject" "^(a+)+$" { fileinto "Never"; }
if header :regex "x-many" "^(a|ab|b)*c$" { fileinto "Never"; }
if header :matches "x-many" "*a*b*a*b*a*b*a*b*a*b*c" { fileinto "Never"; }
