// emoji-data.js: the emoji the picker and the :shortcode: completion offer, vendored
// here so the client needs no network for them. About 550 of the most used emoji,
// in groups; shortcodes follow the names people know from GitHub and Slack.
//
// One line per emoji: "<emoji> <shortcode> [<alias> …] [| <search words>]", and
// "# <group>" lines. Parsed once, when emoji.js first needs it.

const RAW = `
# Smileys
😀 grinning | happy smile
😃 smiley | happy
😄 smile | happy joy
😁 grin
😆 laughing satisfied | laugh
😅 sweat_smile | relief
🤣 rofl rolling_on_the_floor_laughing | laugh lol
😂 joy | laugh tears lol
🙂 slightly_smiling_face
🙃 upside_down_face
😉 wink
😊 blush | smile happy
😇 innocent | angel
🥰 smiling_face_with_three_hearts | love
😍 heart_eyes | love
🤩 star_struck | wow
😘 kissing_heart | kiss
😋 yum | tasty
😛 stuck_out_tongue
😜 stuck_out_tongue_winking_eye | joke
🤪 zany_face | crazy
🤑 money_mouth_face
🤗 hugs hugging_face | hug
🤭 hand_over_mouth | oops
🤫 shushing_face | quiet
🤔 thinking | hmm think
🤐 zipper_mouth_face | secret
🤨 raised_eyebrow | doubt
😐 neutral_face | meh
😑 expressionless
😶 no_mouth
😏 smirk
😒 unamused
🙄 roll_eyes | eyeroll
😬 grimacing | awkward
😌 relieved
😔 pensive
😪 sleepy
🤤 drooling_face
😴 sleeping | zzz
😷 mask | sick
🤒 face_with_thermometer | ill
🤕 face_with_head_bandage | hurt
🤢 nauseated_face
🤮 vomiting_face
🥵 hot_face
🥶 cold_face
🥴 woozy_face
😵 dizzy_face
🤯 exploding_head | mind blown
🤠 cowboy_hat_face
🥳 partying_face | party celebrate
😎 sunglasses | cool
🤓 nerd_face | geek
🧐 monocle_face
😕 confused
😟 worried
🙁 slightly_frowning_face
😮 open_mouth | surprise
😯 hushed
😲 astonished
😳 flushed
🥺 pleading_face | please
😦 frowning
😧 anguished
😨 fearful
😰 cold_sweat
😥 disappointed_relieved
😢 cry | sad tear
😭 sob | sad cry
😱 scream
😖 confounded
😣 persevere
😞 disappointed | sad
😓 sweat
😩 weary
😫 tired_face
🥱 yawning_face | bored
😤 triumph
😡 rage pout | angry
😠 angry
🤬 cursing_face
😈 smiling_imp | devil
💀 skull | dead
💩 poop hankey
🤡 clown_face
👻 ghost
👽 alien
🤖 robot | bot
😺 smiley_cat
😹 joy_cat
😻 heart_eyes_cat
🙈 see_no_evil | monkey
🙉 hear_no_evil | monkey
🙊 speak_no_evil | monkey
# People
👋 wave | hello bye
🤚 raised_back_of_hand
✋ hand raised_hand | stop high five
🖖 vulcan_salute
👌 ok_hand | okay
🤌 pinched_fingers
🤏 pinching_hand | small
✌️ v | victory peace
🤞 crossed_fingers | luck
🤟 love_you_gesture
🤘 metal | rock
🤙 call_me_hand
👈 point_left
👉 point_right
👆 point_up_2
👇 point_down
☝️ point_up
👍 +1 thumbsup | yes like agree
👎 -1 thumbsdown | no dislike
✊ fist_raised fist
👊 facepunch punch | fist bump
🤛 fist_left
🤜 fist_right
👏 clap | applause bravo
🙌 raised_hands | hooray
👐 open_hands
🤲 palms_up_together
🤝 handshake | deal
🙏 pray | please thanks
✍️ writing_hand
💅 nail_care
💪 muscle | strong
🧠 brain | smart
👀 eyes | look see
👁️ eye
👶 baby
🧑 adult | person
👩 woman
👨 man
🧑‍💻 technologist | developer coder
🧑‍🚀 astronaut
🤷 shrug | whatever
🤦 facepalm
🙋 raising_hand | question
🙇 bow | sorry
💁 tipping_hand_person
🙆 ok_person
🙅 no_good
🧘 lotus_position | yoga calm
🏃 runner running
🚶 walking
💃 dancer | dance
🕺 man_dancing | dance
👯 dancers
# Hearts and symbols
❤️ heart | love red
🧡 orange_heart
💛 yellow_heart
💚 green_heart
💙 blue_heart
💜 purple_heart
🖤 black_heart
🤍 white_heart
🤎 brown_heart
💔 broken_heart
💕 two_hearts
💖 sparkling_heart
💘 cupid
💯 100 | hundred perfect
💢 anger
💥 boom collision | explosion
💫 dizzy
💦 sweat_drops
💨 dash | fast
💬 speech_balloon | comment
💭 thought_balloon
💤 zzz | sleep
✅ white_check_mark | done yes check
✔️ heavy_check_mark | check
❌ x | no cross wrong
❎ negative_squared_cross_mark
❗ exclamation heavy_exclamation_mark | important
❓ question | what
❕ grey_exclamation
❔ grey_question
⁉️ interrobang
‼️ bangbang
⚠️ warning | careful
🚫 no_entry_sign | forbidden
⛔ no_entry
🔥 fire | hot lit
✨ sparkles | shiny new
⭐ star
🌟 star2 | glowing
⚡ zap | lightning fast
🎉 tada | party celebrate hooray
🎊 confetti_ball
🎈 balloon
🎁 gift | present
🏆 trophy | win
🥇 1st_place_medal | gold
🥈 2nd_place_medal | silver
🥉 3rd_place_medal | bronze
🏅 medal_sports
🔴 red_circle
🟠 orange_circle
🟡 yellow_circle
🟢 green_circle
🔵 large_blue_circle blue_circle
🟣 purple_circle
⚪ white_circle
⚫ black_circle
➕ heavy_plus_sign | plus add
➖ heavy_minus_sign | minus
➡️ arrow_right
⬅️ arrow_left
⬆️ arrow_up
⬇️ arrow_down
↩️ leftwards_arrow_with_hook | return
🔁 repeat
🔄 arrows_counterclockwise | refresh sync
🆗 ok
🆕 new
🆒 cool
🆘 sos | help
🔒 lock | locked private
🔓 unlock
🔑 key | password
🔔 bell | notification
🔕 no_bell | mute
📌 pushpin | pin
📍 round_pushpin | location
📎 paperclip | attachment
🔗 link
♻️ recycle
⏩ fast_forward
⏸️ pause_button
▶️ arrow_forward | play
⏹️ stop_button
ℹ️ information_source | info
🔢 1234 | numbers
#️⃣ hash
© copyright
® registered
™️ tm | trademark
# Animals and nature
🐶 dog | puppy
🐱 cat | kitten
🐭 mouse
🐹 hamster
🐰 rabbit | bunny
🦊 fox_face | fox
🐻 bear
🐼 panda_face | panda
🐨 koala
🐯 tiger
🦁 lion
🐮 cow
🐷 pig
🐸 frog
🐵 monkey_face | monkey
🐔 chicken
🐧 penguin
🐦 bird
🦆 duck
🦉 owl
🦄 unicorn
🐝 bee honeybee
🐛 bug
🦋 butterfly
🐌 snail | slow
🐢 turtle | slow
🐍 snake | python
🦖 t-rex | dinosaur
🐙 octopus
🦀 crab | rust
🐳 whale
🐬 dolphin
🐟 fish
🦈 shark
🐘 elephant
🦒 giraffe
🐴 horse
🐑 sheep
🐐 goat
🌵 cactus
🎄 christmas_tree
🌲 evergreen_tree
🌳 deciduous_tree | tree
🌴 palm_tree
🌱 seedling | grow
🌿 herb
🍀 four_leaf_clover | luck
🍁 maple_leaf | autumn
🍂 fallen_leaf
🌸 cherry_blossom | flower spring
🌹 rose | flower
🌻 sunflower
🌷 tulip
💐 bouquet
🌞 sun_with_face
☀️ sunny | sun weather
⛅ partly_sunny
🌙 crescent_moon | night
⭐ star
☁️ cloud
🌧️ cloud_with_rain | rain
⛈️ cloud_with_lightning_and_rain | storm
❄️ snowflake | cold winter
⛄ snowman
🌈 rainbow
🌊 ocean | wave sea
💧 droplet | water
🌍 earth_africa | world globe
🌎 earth_americas
🌏 earth_asia
# Food and drink
🍎 apple
🍐 pear
🍊 tangerine orange
🍋 lemon
🍌 banana
🍉 watermelon
🍇 grapes
🍓 strawberry
🍒 cherries
🍑 peach
🥭 mango
🍍 pineapple
🥥 coconut
🥝 kiwi_fruit
🥑 avocado
🍅 tomato
🥕 carrot
🌽 corn
🌶️ hot_pepper | spicy
🥦 broccoli
🥔 potato
🍞 bread
🥐 croissant
🥨 pretzel
🧀 cheese
🥚 egg
🍳 fried_egg | cooking
🥓 bacon
🥞 pancakes
🍔 hamburger | burger
🍟 fries
🍕 pizza
🌭 hotdog
🥪 sandwich
🌮 taco
🌯 burrito
🥗 green_salad | salad
🍝 spaghetti | pasta
🍜 ramen | noodles
🍲 stew
🍛 curry
🍣 sushi
🍱 bento
🍚 rice
🥟 dumpling
🍪 cookie
🎂 birthday | cake
🍰 cake
🧁 cupcake
🥧 pie
🍩 doughnut | donut
🍫 chocolate_bar | chocolate
🍬 candy
🍭 lollipop
🍿 popcorn
🍦 icecream
🥛 milk_glass | milk
☕ coffee | break
🍵 tea
🧃 beverage_box | juice
🥤 cup_with_straw
🧋 bubble_tea
🍺 beer
🍻 beers | cheers
🍷 wine_glass | wine
🥂 clinking_glasses | cheers toast
🍸 cocktail
🍾 champagne
🧊 ice_cube | ice
🍴 fork_and_knife
🥄 spoon
# Activities and travel
⚽ soccer | football
🏀 basketball
🏈 football
⚾ baseball
🎾 tennis
🏐 volleyball
🏉 rugby_football
🎱 8ball | pool
🏓 ping_pong
🏸 badminton
⛳ golf
🥅 goal_net
🏒 ice_hockey
⛷️ skier
🏂 snowboarder
🏄 surfer
🏊 swimmer
🚴 bicyclist
🎯 dart | target bullseye
🎮 video_game | gaming
🕹️ joystick
🎲 game_die | dice
🧩 jigsaw | puzzle
♟️ chess_pawn | chess
🎸 guitar
🎹 musical_keyboard | piano
🥁 drum
🎺 trumpet
🎻 violin
🎵 musical_note | music
🎶 notes | music
🎤 microphone | sing
🎧 headphones | music
🎬 clapper | movie film
🎭 performing_arts | theater
🎨 art | paint
📷 camera | photo
📸 camera_flash
🎥 movie_camera
📺 tv
🚀 rocket | launch ship deploy
✈️ airplane | flight travel
🚁 helicopter
🚗 car red_car
🚕 taxi
🚌 bus
🚓 police_car
🚑 ambulance
🚒 fire_engine
🚚 truck | delivery
🚲 bike | bicycle
🛴 kick_scooter
🚂 steam_locomotive | train
🚆 train2
🚇 metro | subway
⛵ boat sailboat
🚢 ship
⚓ anchor
🏠 house | home
🏡 house_with_garden
🏢 office | work building
🏥 hospital
🏫 school
🏰 european_castle | castle
⛺ tent | camping
🏖️ beach_umbrella | beach
🏝️ desert_island | island
⛰️ mountain
🌋 volcano
🗻 mount_fuji
🗺️ world_map | map
🧭 compass
🚦 vertical_traffic_light
🚧 construction | wip
🚨 rotating_light | alert
🏁 checkered_flag | finish
🚩 triangular_flag_on_post | flag
🏳️ white_flag | surrender
🏴‍☠️ pirate_flag
# Objects
⌚ watch
⏰ alarm_clock
⏱️ stopwatch
⏳ hourglass_flowing_sand | wait
⌛ hourglass | time
📅 date | calendar
📆 calendar
🗓️ spiral_calendar
💻 computer | laptop
⌨️ keyboard
🖥️ desktop_computer
🖨️ printer
🖱️ computer_mouse
💾 floppy_disk | save
💿 cd
📱 iphone | phone mobile
☎️ phone telephone
📞 telephone_receiver | call
📠 fax
🔋 battery
🔌 electric_plug | power
💡 bulb | idea light
🔦 flashlight
🕯️ candle
📚 books | library
📖 book open_book | read
📓 notebook
📒 ledger
📕 closed_book
📝 memo pencil | note write
✏️ pencil2
🖊️ pen
🖍️ crayon
📄 page_facing_up | document
📃 page_with_curl
📑 bookmark_tabs
📋 clipboard
📁 file_folder | folder
📂 open_file_folder
🗂️ card_index_dividers
📊 bar_chart | stats
📈 chart_with_upwards_trend | up growth
📉 chart_with_downwards_trend | down
📦 package | box
📫 mailbox
✉️ email envelope | mail letter
📧 e-mail
📨 incoming_envelope
📣 mega | announce
📢 loudspeaker | announce
🔍 mag | search
🔎 mag_right
🔬 microscope
🔭 telescope
🔧 wrench | fix tool
🔨 hammer | build
🛠️ hammer_and_wrench | tools
⚙️ gear | settings
🔩 nut_and_bolt
🧰 toolbox
🧲 magnet
🧪 test_tube | test
🧬 dna
💊 pill
🩹 adhesive_bandage
🧹 broom | clean
🗑️ wastebasket | trash delete
🛒 shopping_cart
💰 moneybag | money
💵 dollar
💶 euro
💷 pound
💸 money_with_wings
💳 credit_card
🧾 receipt
💎 gem | diamond
🎓 mortar_board | graduate
👑 crown | king queen
🎩 tophat
👓 eyeglasses | glasses
🕶️ dark_sunglasses
👕 shirt tshirt
👟 athletic_shoe | sneaker
🎒 school_satchel | backpack
☂️ umbrella
🧳 luggage | travel
🪴 potted_plant
🛏️ bed | sleep
🛋️ couch_and_lamp
🚪 door
🧸 teddy_bear
🪄 magic_wand | magic
🔮 crystal_ball
🧿 nazar_amulet
🎃 jack_o_lantern | halloween
🎅 santa | christmas
🎆 fireworks
`;

/** [{ name, list: [{ char, names: [shortcode, …aliases], words }] }], parsed once. */
let groups = null;

export function emojiGroups() {
  if (groups) return groups;
  groups = [];
  const seen = new Set();
  for (const line of RAW.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    if (t.startsWith('# ')) {
      groups.push({ name: t.slice(2), list: [] });
      continue;
    }
    const [head, words = ''] = t.split(' | ');
    const [char, ...names] = head.split(' ');
    // An emoji listed in two groups is offered once (in the first).
    if (seen.has(char) || !names.length || !groups.length) continue;
    seen.add(char);
    groups[groups.length - 1].list.push({ char, names, words: words.trim() });
  }
  return groups;
}
