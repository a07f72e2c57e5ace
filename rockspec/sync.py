# Rewrites the rockspec's module and C source lists from lua/ and csrc/ (run from the
# repository root: python3 rockspec/sync.py). rockspec/check.sh fails when they drift.
import os,re,glob
p='rockspec/dbxauth-scm-1.rockspec'
s=open(p).read()
mods=[]
for root,_,files in os.walk('lua'):
    for f in files:
        if f.endswith('.lua'):
            path=os.path.join(root,f)
            name=path[4:-4].replace('/','.')
            if name.endswith('.init'): name=name[:-5]
            mods.append((name,path))
mods.sort(key=lambda m:(m[0]!='dbxauth',m[0]))
lines=''.join('    ["%s"] = "%s",\n'%m for m in mods)
s=re.sub(r'(    \["dbxauth"\] = "lua/dbxauth/init.lua",\n)(    \["dbxauth[^\n]*\n)*', lines, s)
srcs=sorted(glob.glob('csrc/*.c'))
s=re.sub(r'sources = \{[^}]*\}', 'sources = { '+', '.join('"%s"'%x for x in srcs)+' }', s)
open(p,'w').write(s)
